#define _GNU_SOURCE
#include "CProcess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/fs.h>
#include <sys/ioctl.h>
#endif
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

int shoal_become_subreaper(void) {
#if defined(__linux__) && defined(PR_SET_CHILD_SUBREAPER)
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
#else
    return ENOSYS;
#endif
}

/* /dev/null, opened once (close-on-exec) and given to every child as its stdin. */
static int devnull_fd = -1;
static pthread_once_t devnull_once = PTHREAD_ONCE_INIT;
static void open_devnull(void) { devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); }

int shoal_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                int out_fd, int err_fd) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    int rc = posix_spawnattr_init(&attr);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        posix_spawnattr_destroy(&attr);
        return rc;
    }

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    /* A session of its own (so also a process group whose number is its pid): the command has no
       controlling terminal, so a program that asks the terminal for a password fails at once
       (ENXIO on /dev/tty) instead of being stopped by SIGTTIN with its whole group for ever.
       glibc refuses SETSID together with SETPGROUP (setpgid fails for a session leader). */
    short flags = POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, flags);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &empty);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);

    pthread_once(&devnull_once, open_devnull);
    if (rc == 0 && devnull_fd >= 0) rc = posix_spawn_file_actions_adddup2(&actions, devnull_fd, 0);
    if (rc == 0 && devnull_fd < 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    if (rc == 0 && cwd != NULL) rc = posix_spawn_file_actions_addchdir_np(&actions, cwd);
#else
    if (rc == 0 && cwd != NULL) rc = ENOSYS;
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif

    if (rc == 0) rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int shoal_pidfd_open(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int shoal_copy_file(int src_fd, int dst_fd) {
#if defined(__linux__) && defined(FICLONE)
    if (ioctl(dst_fd, FICLONE, src_fd) == 0) return 0;
#endif
#if defined(__linux__)
    for (int copied = 0;;) {
        ssize_t n = copy_file_range(src_fd, NULL, dst_fd, NULL, (size_t)1 << 30, 0);
        if (n > 0) {
            copied = 1;
            continue;
        }
        /* 0 at the very start may be a file whose size says 0 but that has contents (procfs and
           sysfs on some kernels): let read() tell. 0 later is the end. */
        if (n == 0 && copied) return 0;
        if (n == 0) break;
        if (errno == EINTR) continue;
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EPERM) break;
        return errno;
    }
    /* copy_file_range refused or could not tell: copy by hand from where it stopped. */
#endif
    char buffer[65536];
    for (;;) {
        ssize_t n = read(src_fd, buffer, sizeof buffer);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(dst_fd, buffer + done, (size_t)(n - done));
            if (w < 0) {
                if (errno == EINTR) continue;
                return errno;
            }
            done += w;
        }
    }
}

int shoal_pipe(int fds[2]) {
    /* O_NONBLOCK only on the read end: the write end becomes the command's stdout or stderr, and
       a command writing to a non-blocking pipe gets EAGAIN when the reader falls behind. */
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    int flags = fcntl(fds[0], F_GETFL);
    if (flags < 0 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) != 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    return 0;
}

int shoal_reset_ignored_sigchld(void) {
    struct sigaction current;
    if (sigaction(SIGCHLD, NULL, &current) != 0) return 0;
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN) {
        struct sigaction fresh;
        sigemptyset(&fresh.sa_mask);
        fresh.sa_flags = 0;
        fresh.sa_handler = SIG_DFL;
        return sigaction(SIGCHLD, &fresh, NULL) == 0 ? 1 : 0;
    }
    return 0;
}

int shoal_signal_is_ignored(int sig) {
    struct sigaction current;
    if (sigaction(sig, NULL, &current) != 0) return 0;
    return !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN;
}
