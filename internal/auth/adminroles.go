package auth

// Roles of the admin API (internal/admin): a principal holding one of
// them may use it. They grant nothing on the MQTT side unless auth.roles
// defines them, and are not reported as unknown roles.
const (
	RoleAdmin  = "PETREL_ADMIN"
	RoleViewer = "PETREL_VIEWER"
)

// isAdminRole reports whether name is a role of the admin API.
func isAdminRole(name string) bool { return name == RoleAdmin || name == RoleViewer }
