// Process control that Swift cannot call directly: variadic functions (prctl, syscall, ioctl) and
// the glibc posix_spawn extensions, wrapped in fixed-signature functions. Used by Shoal's exec
// tasks. Needs Linux 5.3 (pidfd_open; older kernels fall back to polling) and glibc 2.34
// (posix_spawn_file_actions_addclosefrom_np; 2.29 for addchdir_np), as on Debian 12.
#ifndef SHOAL_CPROCESS_H
#define SHOAL_CPROCESS_H

#include <sys/types.h>

/// Makes the calling process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): descendants whose
/// parent dies are re-parented to it instead of to init, so it can find, kill and reap them.
/// Returns 0, or an errno value (ENOSYS where the platform has no subreapers).
int shoal_become_subreaper(void);

/// Starts `path` with `argv` and `envp` as a clean child:
/// - in a new session of its own, with no controlling terminal, and so in a new process group
///   whose number is its pid: the whole group can be signalled, and a program that reads or
///   configures the terminal fails instead of stopping the group for ever (SIGTTIN/SIGTTOU);
/// - with an empty signal mask and the default disposition for every signal, whatever the
///   parent blocked or ignored;
/// - stdin from /dev/null, stdout on `out_fd`, stderr on `err_fd`, working directory `cwd`;
/// - with every other file descriptor closed.
/// Uses posix_spawn (vfork-like on glibc: no page-table copy of a large parent).
/// Returns 0 and stores the child's pid in `*pid`, or returns an errno value.
int shoal_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                int out_fd, int err_fd);

/// `pidfd_open(pid, 0)`: a descriptor that `poll` reports readable once `pid` has exited, or -1
/// with errno set (ENOSYS before Linux 5.3).
int shoal_pidfd_open(pid_t pid);

/// Copies the whole of `src_fd` into `dst_fd` (both open, `dst_fd` empty): a reflink clone where
/// the file system shares blocks (FICLONE: btrfs, XFS), else `copy_file_range` (in the kernel,
/// no user-space buffer), else read/write. Returns 0 or an errno value.
int shoal_copy_file(int src_fd, int dst_fd);

/// A pipe for a command's output: both ends close-on-exec, the read end (`fds[0]`) non-blocking,
/// the write end blocking (it becomes the command's stdout or stderr). Returns 0, or -1 with errno.
int shoal_pipe(int fds[2]);

/// Gives SIGCHLD its default action if it is ignored (a parent may start us that way, and then
/// the kernel reaps our children itself, so no exit status could ever be read). Leaves a handler
/// in place. Returns 1 when it changed something, else 0.
int shoal_reset_ignored_sigchld(void);

/// Whether `sig` is ignored (SIG_IGN) in this process, as `nohup` leaves SIGHUP.
int shoal_signal_is_ignored(int sig);

#endif
