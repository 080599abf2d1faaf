//go:build linux && amd64

#include "textflag.h"
#include "go_asm.h"

#define SYS_rt_sigprocmask 14
#define SYS_nanosleep 35
#define SYS_clone 56
#define SYS_exit 60
#define SIG_SETMASK 2

// func cloneWarm(t *rawThread, flags uintptr, stack uintptr) int64
TEXT ·cloneWarm(SB),NOSPLIT,$0-32
	MOVQ	t+0(FP), R12
	// rt_sigprocmask(SIG_SETMASK, &t.all, &t.old, 8): the new thread
	// starts with every signal blocked, so that no Go signal handler
	// ever runs on it.
	MOVQ	$SIG_SETMASK, DI
	LEAQ	rawThread_all(R12), SI
	LEAQ	rawThread_old(R12), DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JLS	masked
	MOVQ	AX, ret+24(FP)
	RET
masked:
	// clone(flags, stack, &t.tid, &t.tid, 0)
	MOVQ	flags+8(FP), DI
	MOVQ	stack+16(FP), SI
	LEAQ	rawThread_tid(R12), DX
	MOVQ	DX, R10
	XORQ	R8, R8
	MOVQ	$SYS_clone, AX
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	MOVQ	AX, ret+24(FP)
	// The caller's mask back (the clone's result is already stored).
	MOVQ	$SIG_SETMASK, DI
	LEAQ	rawThread_old(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	RET
child:
	// The new thread: R12 is t (clone copies the registers). It uses no
	// stack: nanosleep until t.quit, then exit the thread.
	MOVL	rawThread_quit(R12), AX
	CMPL	AX, $0
	JNE	done
	LEAQ	rawThread_ts(R12), DI
	XORQ	SI, SI
	MOVQ	$SYS_nanosleep, AX
	SYSCALL
	JMP	child
done:
	XORQ	DI, DI
	MOVQ	$SYS_exit, AX
	SYSCALL
	INT	$3
