import CProcess
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every shell command this process runs for exec tasks, and what it leaves behind.
///
/// **The contract:** a task ends when its shell exits, and when it ends nothing it started is
/// left running. Each command starts through `posix_spawn` as a clean child (its own session
/// without a terminal, so its own process group too; an empty signal mask, default signal
/// dispositions, every descriptor but its three standard ones closed; see `shoal_spawn`) with
/// the variable `SHOAL_EXEC_TAG=<our pid>.<task>` in its environment, which its descendants
/// inherit. When the shell exits (seen through a
/// pidfd, not through its pipes, which a background child may hold for ever), the runner
///
/// 1. kills the shell's process group while the unreaped shell still holds its number, so the
///    number cannot have been reused: this ends `cmd &`, `nohup cmd &` and the like;
/// 2. reaps the shell;
/// 3. when this process owns its children (`adoptOrphans()`), kills and reaps its orphans:
///    descendants that left the group (`setsid`, double forks) are re-parented to this process,
///    a child subreaper, when their parent dies (the kernel hands them to its first live thread,
///    the main one), so the runner reads that thread's `/proc/.../children`, kills each child
///    whose tag names a task that has ended, reaps the dead, and repeats until none is left
///    (killing one hands its own children over).
///
/// A timeout sends SIGTERM to the group, then SIGKILL after a grace; the same clean-up follows.
/// `terminateAll()` (on SIGINT, SIGTERM or SIGHUP) refuses new commands and kills every running one
/// and every child left on any thread; `killLeftovers()` (when a run ends) kills the children left.
///
/// **Why this way.** A process group alone misses `setsid`; a subreaper alone cannot tell whose
/// orphan is whose when many tasks run at once (every orphan lands on the main thread), and
/// killing an orphan of a still-running task would break a command that starts a helper in the
/// background; the tag tells. A per-task supervisor process would attribute everything without a
/// tag, but costs a second process start per task, which the exec benchmark cannot afford. Limits: a descendant that clears its
/// environment (`env -i`) and leaves the group is not attributed to its task; it is killed when
/// the run ends (`killLeftovers()`). Without `adoptOrphans()` (a library user whose process has
/// children of its own, such as a test runner), only the process group is killed, since reaping
/// children this code did not start would steal their exit status from their owner.
public final class CommandProcesses: Sendable {
    /// The one instance: signals and `/proc` are process-wide.
    public static let shared = CommandProcesses()

    /// The environment variable that marks a command's descendants.
    public static let tagVariable = "SHOAL_EXEC_TAG"

    /// Rounds of "kill the tagged orphans, reap them" after a task before giving up on a command
    /// that keeps forking (each round kills every orphan then known).
    public static let maxSweepRounds = 64

    private struct State {
        var closed = false
        var owner = false
        var next: UInt64 = 0
        /// Running commands by task number, with their shell's pid (0 until spawned). A command
        /// leaves it just before its shell is reaped.
        var running: [UInt64: pid_t] = [:]
        /// Shells spawned and not reaped yet: a sweep must never reap one (its runner waits for it).
        var unreaped: Set<pid_t> = []
    }
    private let state = Mutex(State())
    /// `SHOAL_EXEC_TAG=<pid>.` as bytes: every tag of this process starts with it.
    private let tagPrefix: [UInt8]

    private init() {
        tagPrefix = Array("\(Self.tagVariable)=\(getpid()).".utf8)
        // With SIGCHLD ignored the kernel reaps every child at once and no exit status can be
        // read: a failing command would look like one that succeeded.
        shoal_reset_ignored_sigchld()
    }

    /// Makes this process a child subreaper and lets the runner kill and reap the orphans of its
    /// commands. Call it only in a process whose every child comes from `CommandProcesses` (the
    /// `shoal` command does); returns false where the platform has no subreapers.
    @discardableResult
    public func adoptOrphans() -> Bool {
        // Orphans are found through `/proc/<pid>/task/<tid>/children` (CONFIG_PROC_CHILDREN):
        // without it a sweep would silently find nothing.
        guard Self.children(path: "/proc/self/task/\(getpid())/children") != nil, shoal_become_subreaper() == 0 else {
            return false
        }
        state.withLock { $0.owner = true }
        return true
    }

    /// Whether `adoptOrphans()` took effect.
    public var ownsOrphans: Bool { state.withLock { $0.owner } }

    /// Whether `terminateAll()` was called: no command starts any more.
    public var isTerminating: Bool { state.withLock { $0.closed } }

    /// For shutting down (the `shoal` command calls it on SIGINT, SIGTERM and SIGHUP): refuses
    /// new commands from now on, kills every running command's process group, then the leftovers
    /// (`killLeftovers()`). Safe to call from any thread, more than once. There is no way back:
    /// a process that goes on running workflows after a run ends calls `killLeftovers()` instead.
    public func terminateAll() {
        state.withLock { $0.closed = true }
        // A command whose spawn is under way gets its pid in a moment: wait for it (bounded).
        var spawning = 0
        while spawning < 1_000 && state.withLock({ $0.running.values.contains(0) }) {
            usleep(1_000)
            spawning += 1
        }
        // Under the lock: a runner forgets its command before it reaps the shell, so a pid still
        // listed here is still that shell's, never a number the kernel gave to another process.
        let pids = state.withLock { s in
            let live = s.running.values.filter { $0 > 0 }
            for pid in live {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            return live
        }
        guard ownsOrphans else { return }
        // Their children come to us once they have died: wait for that (bounded) before looking.
        var waited = 0
        while waited < 2_000 && pids.contains(where: { !Self.isZombie($0) && kill($0, 0) == 0 }) {
            usleep(1_000)
            waited += 1
        }
        killLeftovers()
    }

    /// When this process owns its children: kills every child that is not a running command's
    /// shell (tagged orphans, and untagged ones no task could be told from), on every thread, and
    /// reaps them; killing one hands its own children over, so it repeats until none is left
    /// (bounded). The `shoal` command calls it when a run ends. New commands may still start.
    public func killLeftovers() {
        guard ownsOrphans else { return }
        for _ in 0..<Self.maxSweepRounds {
            let unreaped = state.withLock { $0.unreaped }
            var victims: [pid_t] = []
            for thread in Self.threadIDs() {
                for child in Self.children(path: "/proc/self/task/\(thread)/children") ?? [] where !unreaped.contains(child) {
                    kill(child, SIGKILL)
                    victims.append(child)
                }
            }
            if victims.isEmpty { break }
            Self.reap(victims)
        }
    }

    /// Reaps `pids` (children of this process that are dead or were sent SIGKILL) without ever
    /// blocking for long: a zombie whose other threads still run, or a process killed while in an
    /// uninterruptible wait (a hung NFS mount), is not reapable yet, and waiting for it would hang
    /// the task or the shutdown. Waits at most `reapWaitMs` for all; what is left is reaped by a
    /// later sweep, or by init once this process exits.
    static func reap(_ pids: [pid_t]) {
        var left = pids
        var waited = 0
        while !left.isEmpty {
            left = left.filter { pid in
                var status: Int32 = 0
                var r: pid_t
                repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
                return r == 0  // still there; -1 (ECHILD: someone else reaped it) or pid: done
            }
            if left.isEmpty || waited >= reapWaitMs { break }
            usleep(1_000)
            waited += 1
        }
    }

    /// How long `reap` waits for processes it killed to be reapable.
    static let reapWaitMs = 1_000

    // MARK: - Used by ExecRunner

    /// A number for a command about to start; nil when the run is being terminated.
    func begin() -> UInt64? {
        state.withLock { s in
            guard !s.closed else { return nil }
            s.next += 1
            s.running[s.next] = 0
            return s.next
        }
    }

    /// Records the started shell. Returns false when `terminateAll()` ran in between: the caller
    /// must kill it.
    func started(_ task: UInt64, pid: pid_t) -> Bool {
        state.withLock { s in
            s.running[task] = pid
            s.unreaped.insert(pid)
            return !s.closed
        }
    }

    /// Forgets a command; call it before reaping its shell, so `terminateAll()` never signals a
    /// number the kernel may have given to another process.
    func finished(_ task: UInt64) {
        _ = state.withLock { $0.running.removeValue(forKey: task) }
    }

    /// `SHOAL_EXEC_TAG=<pid>.<task>`.
    func tag(_ task: UInt64) -> String { String(decoding: tagPrefix, as: UTF8.self) + String(task) }

    /// The shell `pid` was reaped: a sweep may reap a child of that number from now on.
    func reaped(_ pid: pid_t) {
        _ = state.withLock { $0.unreaped.remove(pid) }
    }

    /// After the shell `shell` was reaped: kills and reaps the orphans it left (when this process
    /// owns its children). An orphan is this task's when its tag names a task that has ended, or
    /// when it is still in the shell's process group (a process whose environment cannot be read
    /// for a moment, half-way through exec or killed already, still has its group). Returns how
    /// many processes it killed.
    @discardableResult
    func sweepOrphans(shell: pid_t) -> Int {
        guard ownsOrphans else { return 0 }
        var killed = 0
        for _ in 0..<Self.maxSweepRounds {
            let children = Self.orphanCandidates()
            if children.isEmpty { break }
            let (running, unreaped) = state.withLock { ($0.running, $0.unreaped) }
            // A shell whose spawn is under way is not in `unreaped` yet: reap no zombie now.
            let spawning = running.values.contains(0)
            var victims: [pid_t] = [], unsure = false
            for child in children where !unreaped.contains(child) {
                guard let state = Self.processState(child) else { continue }  // gone already
                if state.isZombie {
                    if !spawning { victims.append(child) }  // dead already: only reaping is left
                    continue
                }
                let task = taggedTask(child)
                if let task, running[task] != nil { continue }  // a running task's helper
                if task != nil || state.group == shell {
                    // Its task has ended: this one's, or one an earlier sweep could not catch.
                    kill(child, SIGKILL)
                    killed += 1
                    victims.append(child)
                } else if Self.readFile("/proc/\(child)/environ", limit: 1) == nil {
                    unsure = true  // cannot tell yet: look again in a moment
                }
            }
            if victims.isEmpty && !unsure { break }
            if victims.isEmpty { usleep(1_000) }
            Self.reap(victims)
        }
        return killed
    }

    /// The children orphans land on: the kernel gives an orphan to the first live thread of its
    /// subreaper, the main thread unless that has exited.
    private static func orphanCandidates() -> [pid_t] {
        if let main = children(path: "/proc/self/task/\(getpid())/children") { return main }
        return threadIDs().flatMap { children(path: "/proc/self/task/\($0)/children") ?? [] }
    }

    // MARK: - /proc

    /// The task number in `pid`'s tag, when its environment holds a tag of this process.
    private func taggedTask(_ pid: pid_t) -> UInt64? {
        guard let environment = Self.readFile("/proc/\(pid)/environ", limit: 1 << 20) else { return nil }
        for entry in environment.split(separator: 0, omittingEmptySubsequences: true)
        where entry.starts(with: tagPrefix) {
            return UInt64(String(decoding: entry.dropFirst(tagPrefix.count), as: UTF8.self))
        }
        return nil
    }

    /// What `/proc/<pid>/stat` says of a process that the sweeps need, read once.
    struct ProcessState {
        /// Exited and waiting to be reaped (state `Z`).
        var isZombie: Bool
        /// Its process group (field 5).
        var group: pid_t?
    }

    /// `pid`'s state, or nil when it is gone. The command name (field 2) may hold spaces and
    /// parentheses, so the fields are counted from its last `)`.
    static func processState(_ pid: pid_t) -> ProcessState? {
        guard let stat = readFile("/proc/\(pid)/stat", limit: 512),
            let paren = stat.lastIndex(of: UInt8(ascii: ")")), paren + 2 < stat.count
        else { return nil }
        // After ") ": state, ppid, pgrp.
        let fields = stat[(paren + 2)...].split(separator: UInt8(ascii: " "), maxSplits: 3)
        return ProcessState(
            isZombie: stat[paren + 2] == UInt8(ascii: "Z"),
            group: fields.count >= 3 ? pid_t(String(decoding: fields[2], as: UTF8.self)) : nil)
    }

    /// Whether `pid` has exited and waits to be reaped.
    static func isZombie(_ pid: pid_t) -> Bool { processState(pid)?.isZombie ?? false }

    /// The pids listed in a `/proc/.../children` file (nil when it cannot be read).
    private static func children(path: String) -> [pid_t]? {
        guard let bytes = readFile(path, limit: 1 << 20) else { return nil }
        return bytes.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self)) }
    }

    /// This process's thread ids (`/proc/self/task`).
    private static func threadIDs() -> [String] {
        FileOps.names(in: "/proc/self/task").map { String(decoding: $0, as: UTF8.self) }.filter { $0.first?.isNumber == true }
    }

    /// A whole small file, or nil when it cannot be opened (a process that is gone).
    static func readFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            result += buffer[0..<n]
        }
        return result
    }
}
