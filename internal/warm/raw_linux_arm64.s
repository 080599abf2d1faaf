//go:build linux && arm64

#include "textflag.h"
#include "go_asm.h"

#define SYS_rt_sigprocmask 135
#define SYS_nanosleep 101
#define SYS_clone 220
#define SYS_exit 93
#define SIG_SETMASK 2

// func cloneWarm(t *rawThread, flags uintptr, stack uintptr) int64
TEXT ·cloneWarm(SB),NOSPLIT,$0-32
	MOVD	t+0(FP), R19
	// rt_sigprocmask(SIG_SETMASK, &t.all, &t.old, 8): the new thread
	// starts with every signal blocked, so that no Go signal handler
	// ever runs on it.
	MOVD	$SIG_SETMASK, R0
	ADD	$rawThread_all, R19, R1
	ADD	$rawThread_old, R19, R2
	MOVD	$8, R3
	MOVD	$SYS_rt_sigprocmask, R8
	SVC
	CMN	$4095, R0
	BCC	masked
	MOVD	R0, ret+24(FP)
	RET
masked:
	// clone(flags, stack, &t.tid, tls 0, &t.tid)
	MOVD	flags+8(FP), R0
	MOVD	stack+16(FP), R1
	ADD	$rawThread_tid, R19, R2
	MOVD	$0, R3
	MOVD	R2, R4
	MOVD	$SYS_clone, R8
	SVC
	CMP	$0, R0
	BEQ	child
	MOVD	R0, ret+24(FP)
	// The caller's mask back (the clone's result is already stored).
	MOVD	$SIG_SETMASK, R0
	ADD	$rawThread_old, R19, R1
	MOVD	$0, R2
	MOVD	$8, R3
	MOVD	$SYS_rt_sigprocmask, R8
	SVC
	RET
child:
	// The new thread: R19 is t (clone copies the registers). It uses no
	// stack: nanosleep until t.quit, then exit the thread.
	MOVWU	rawThread_quit(R19), R0
	CBNZ	R0, done
	ADD	$rawThread_ts, R19, R0
	MOVD	$0, R1
	MOVD	$SYS_nanosleep, R8
	SVC
	B	child
done:
	MOVD	$0, R0
	MOVD	$SYS_exit, R8
	SVC
	UNDEF
