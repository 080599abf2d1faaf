module github.com/petrel-mqtt/petrel

go 1.26.8
