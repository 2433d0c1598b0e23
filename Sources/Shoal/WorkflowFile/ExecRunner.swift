import CProcess
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why an exec task failed. The engine attaches it to the task's failure.
public struct ExecTaskFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// The command exited with a non-zero status.
        case exit(code: Int32)
        /// The command was killed by a signal it did not expect (not the timeout's).
        case signal(Int32)
        /// The command ran longer than the timeout; it and everything it started were killed.
        case timedOut(seconds: Double)
        /// The caller gave no input path for a datum the command reads.
        case missingInput(datum: String)
        /// The command exited with 0 but did not create the output file of a written datum.
        case missingOutput(datum: String)
        /// The command left something other than a regular file where a written datum's new
        /// version goes (a directory, a symlink, a FIFO...).
        case outputNotAFile(datum: String, kind: FileKind)
        /// The command changed (wrote, truncated, replaced, removed or re-moded) its private copy
        /// of a datum it only reads. No other task saw it: every task reads its own copy.
        case modifiedInput(datum: String)
        /// The scratch folder could not be prepared (message from the file system).
        case setup(String)
        /// The shell could not be started.
        case launch(String)
        /// The shell ran, but its exit status could not be read (something else in this process
        /// reaped it): the task cannot be known to have succeeded.
        case statusLost
    }

    /// The task's (expanded) name.
    public var taskName: String
    public var reason: Reason
    /// The last bytes (at most `ExecRunner.Settings.stderrTailBytes`) of the command's stderr,
    /// decoded as UTF-8 with replacement characters.
    public var stderrTail: String
    /// The rendered command line that ran (empty if it never started).
    public var command: String

    public init(taskName: String, reason: Reason, stderrTail: String = "", command: String = "") {
        self.taskName = taskName
        self.reason = reason
        self.stderrTail = stderrTail
        self.command = command
    }

    /// The exit status for `.exit`, else nil.
    public var exitCode: Int32? {
        if case .exit(let code) = reason { return code }
        return nil
    }

    public var description: String {
        let what: String
        switch reason {
        case .exit(let code): what = "exit code \(code)"
        case .signal(let s): what = "killed by signal \(s)"
        case .timedOut(let t): what = "timed out after \(t) s; it and everything it started were killed"
        case .missingInput(let d): what = "no input file was given for datum '\(d)'"
        case .missingOutput(let d): what = "the command did not create its output '\(d)'"
        case .outputNotAFile(let d, let kind): what = "the command left \(kind), not a regular file, as its output '\(d)'"
        case .modifiedInput(let d): what = "the command modified its read-only input '\(d)'"
        case .setup(let m): what = "cannot prepare the scratch folder: \(m)"
        case .launch(let m): what = "cannot start the shell: \(m)"
        case .statusLost: what = "its exit status was lost (something else in this process reaped the shell)"
        }
        var s = "task '\(taskName)' failed: \(what)"
        if !stderrTail.isEmpty { s += "\nstderr:\n" + stderrTail }
        return s
    }
}

/// Runs one exec task synchronously: safe to call from any worker thread, uses no Swift
/// concurrency, and blocks the calling thread until the command ends.
///
/// Path convention inside the scratch folder `S` (empty when the attempt starts, and private to it):
/// - `S/in/<datum>`: the current version of every datum the task reads with `in` (and of an
///   `inout` or `commutative` datum the command also names as `{in:x}`), as a private read-only (0444) copy made in the kernel (a reflink clone where
///   the file system can, else `copy_file_range`). `{in:x}` renders this. A copy, not a hard
///   link: the read-only mode does not stop root, and a command that wrote through a link would
///   change the version every other task reads. After the command, each copy's identity, size,
///   mode and times must be unchanged, or the task fails with `.modifiedInput`. The cost is one
///   in-kernel copy per input per attempt (`shoal bench exec --input-bytes N` measures it).
/// - `S/out/<datum>`: the new version of every datum the task writes (`out`, `inout`,
///   `commutative`). For `inout`/`commutative` it starts as a writable copy of the input; for `out`
///   it does not exist until the command creates it. `{out:x}`, `{inout:x}` and `{commutative:x}`
///   render this. After a zero exit every such file must exist and be a regular file.
/// - `concurrent` data are not copied: `{concurrent:x}` renders the caller's shared path, which all
///   tasks of the concurrent run use at once.
/// The command runs as `/bin/sh -c <command>` with `S` as working directory, stdin from
/// `/dev/null`, and stdout/stderr captured (last `stdoutTailBytes`/`stderrTailBytes` kept). It
/// ends when the shell exits; whatever it left running is killed then (`CommandProcesses`).
/// Placeholders render absolute, shell-quoted paths.
public struct ExecRunner: Sendable {
    /// Tunables.
    public struct Settings: Sendable, Hashable {
        /// The shell; run as `shell -c command`.
        public var shell: String
        /// How much of the end of stderr to keep.
        public var stderrTailBytes: Int
        /// How much of the end of stdout to keep.
        public var stdoutTailBytes: Int
        /// After a timeout's SIGTERM, how long to wait before SIGKILL (at most an hour).
        public var killGraceMs: Int
        /// After the shell exited and everything it left behind was killed, how long to keep
        /// reading the last of their output from the pipes (a bound, in case a process the
        /// runner could not attribute still holds one; at most a minute).
        public var drainMs: Int
        /// Variables added to (or replacing) the inherited environment.
        public var environment: [String: String]

        public init(
            shell: String = "/bin/sh", stderrTailBytes: Int = 64 * 1024, stdoutTailBytes: Int = 64 * 1024,
            killGraceMs: Int = 2000, drainMs: Int = 200, environment: [String: String] = [:]
        ) {
            self.shell = shell
            self.stderrTailBytes = stderrTailBytes
            self.stdoutTailBytes = stdoutTailBytes
            self.killGraceMs = killGraceMs
            self.drainMs = drainMs
            self.environment = environment
        }
    }

    /// One run of one exec task.
    public struct Request: Sendable, Hashable {
        /// The task's name, for errors.
        public var taskName: String
        /// The command; its `accesses` say what to prepare.
        public var command: CommandTemplate
        /// The scratch folder; created if missing. It must be empty (a workflow run reuses
        /// folders it has emptied) and used by this attempt alone.
        public var scratch: URL
        /// For every datum read with `in`, `inout` or `commutative`: the path of its current version.
        public var inputs: [String: String]
        /// For every `concurrent` datum: the path shared by the concurrent run.
        public var sharedPaths: [String: String]
        /// Kill the command's process group after this many seconds (nil: no limit).
        public var timeoutSeconds: Double?

        public init(
            taskName: String, command: CommandTemplate, scratch: URL, inputs: [String: String] = [:],
            sharedPaths: [String: String] = [:], timeoutSeconds: Double? = nil
        ) {
            self.taskName = taskName
            self.command = command
            self.scratch = scratch
            self.inputs = inputs
            self.sharedPaths = sharedPaths
            self.timeoutSeconds = timeoutSeconds
        }

        /// A request for an exec `TaskCall`. Precondition: `call.kind` is `.exec`.
        public init(
            call: TaskCall, scratch: URL, inputs: [String: String] = [:], sharedPaths: [String: String] = [:],
            timeoutSeconds: Double? = nil
        ) {
            guard case .exec(let command) = call.kind else {
                preconditionFailure("ExecRunner.Request(call:): task '\(call.name)' is not an exec task: \(call.kind)")
            }
            self.init(
                taskName: call.name, command: command, scratch: scratch, inputs: inputs, sharedPaths: sharedPaths,
                timeoutSeconds: timeoutSeconds)
        }
    }

    /// What a successful run produced.
    public struct Result: Sendable, Hashable {
        /// For every written datum: the file holding its new version (`S/out/<datum>`, or the
        /// shared path for `concurrent`).
        public var outputs: [String: String]
        /// The command line that ran.
        public var command: String
        /// The end of stdout / stderr (bounded by the settings).
        public var stdoutTail: [UInt8]
        public var stderrTail: [UInt8]
        /// Wall-clock run time of the command.
        public var durationSeconds: Double
    }

    public var settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// `S/in/<datum>`.
    public static func inputPath(scratch: URL, datum: String) -> URL {
        scratch.appendingPathComponent("in", isDirectory: true).appendingPathComponent(datum)
    }

    /// `S/out/<datum>`.
    public static func outputPath(scratch: URL, datum: String) -> URL {
        scratch.appendingPathComponent("out", isDirectory: true).appendingPathComponent(datum)
    }

    /// Prepares the scratch folder, runs the command, and checks its outputs.
    /// Throws `ExecTaskFailure` for a non-zero exit, a signal, a timeout, a missing input or
    /// output, an input the command changed, or a setup/launch problem; the stderr tail is
    /// attached when the command ran.
    public func run(_ request: Request) throws(ExecTaskFailure) -> Result {
        // Plain string paths from here on: Foundation's URL operations cost more than the work.
        var scratch = request.scratch.standardizedFileURL.path
        while scratch.count > 1 && scratch.hasSuffix("/") { scratch.removeLast() }
        let inFolder = scratch + "/in", outFolder = scratch + "/out"
        func fail(_ reason: ExecTaskFailure.Reason, stderr: [UInt8] = [], command: String = "") -> ExecTaskFailure {
            ExecTaskFailure(
                taskName: request.taskName, reason: reason, stderrTail: String(decoding: stderr, as: UTF8.self),
                command: command)
        }

        if CommandProcesses.shared.isTerminating { throw fail(.launch("the run is being stopped")) }
        if let t = request.timeoutSeconds, !(t.isFinite && t > 0) {
            throw fail(.setup("the timeout must be a finite number of seconds more than 0, not \(t)"))
        }
        // Prepare S/in and S/out: private copies, so nothing a command does to them reaches a
        // version file another task reads.
        var outputs: [String: String] = [:]
        var inputCopies: [(datum: String, path: String, fingerprint: FileFingerprint)] = []
        let accesses = request.command.accesses
        // The data an `{in:x}` placeholder shows: only they need the read-only copy (an `inout`
        // or `commutative` command that names only `{inout:x}` reads its writable copy).
        var shownAsInput = Set<String>()
        for case .placeholder(let datum, .in) in request.command.parts { shownAsInput.insert(datum) }
        for access in accesses {
            let given = access.direction == .concurrent ? request.sharedPaths : access.direction.reads ? request.inputs : nil
            if let given, given[access.datum] == nil { throw fail(.missingInput(datum: access.datum)) }
        }
        do throws(FileError) {
            try FileOps.makeDirectory(scratch)
            if accesses.contains(where: { $0.direction.reads && $0.direction != .concurrent }) {
                try FileOps.makeDirectory(inFolder)
            }
            if accesses.contains(where: { $0.direction.writes && $0.direction != .concurrent }) {
                try FileOps.makeDirectory(outFolder)
            }
            for access in accesses {
                let datum = access.datum
                let inPath = inFolder + "/" + datum, outPath = outFolder + "/" + datum
                switch access.direction {
                case .concurrent:
                    outputs[datum] = request.sharedPaths[datum]!
                case .out:
                    // Nothing may be there before the command (a reused folder is emptied, but
                    // a process the runner could not attribute may still write into it).
                    if unlink(outPath) != 0 && errno != ENOENT { throw FileError("clear", outPath) }
                    outputs[datum] = outPath
                case .in, .inout, .commutative:
                    let source = request.inputs[datum]!
                    if access.direction == .in || shownAsInput.contains(datum) {
                        try FileOps.copyFile(from: source, to: inPath, mode: 0o444)
                        inputCopies.append((datum, inPath, try FileFingerprint(path: inPath)))
                    }
                    if access.direction != .in {
                        try FileOps.copyFile(from: source, to: outPath, mode: 0o644)
                        outputs[datum] = outPath
                    }
                }
            }
        } catch {
            throw fail(.setup(error.description))
        }

        let rendered = request.command.render { datum, direction in
            switch direction {
            case .in: inFolder + "/" + datum
            case .out, .inout, .commutative: outFolder + "/" + datum
            case .concurrent: request.sharedPaths[datum] ?? ""
            }
        }

        let outcome: Outcome
        do {
            outcome = try execute(rendered, in: scratch, timeoutSeconds: request.timeoutSeconds)
        } catch {
            throw fail(.launch(error.message), command: rendered)
        }
        switch outcome.status {
        case .timedOut(let t): throw fail(.timedOut(seconds: t), stderr: outcome.stderr, command: rendered)
        case .signal(let s): throw fail(.signal(s), stderr: outcome.stderr, command: rendered)
        case .exit(let code) where code != 0: throw fail(.exit(code: code), stderr: outcome.stderr, command: rendered)
        case .lost: throw fail(.statusLost, stderr: outcome.stderr, command: rendered)
        case .exit: break
        }
        for input in inputCopies where (try? FileFingerprint(path: input.path)) != input.fingerprint {
            throw fail(.modifiedInput(datum: input.datum), stderr: outcome.stderr, command: rendered)
        }
        for access in accesses where access.direction.writes && access.direction != .concurrent {
            let path = outFolder + "/" + access.datum
            guard let kind = FileOps.kind(path) else {
                throw fail(.missingOutput(datum: access.datum), stderr: outcome.stderr, command: rendered)
            }
            guard kind == .regular else {
                throw fail(.outputNotAFile(datum: access.datum, kind: kind), stderr: outcome.stderr, command: rendered)
            }
        }
        return Result(
            outputs: outputs, command: rendered, stdoutTail: outcome.stdout, stderrTail: outcome.stderr,
            durationSeconds: outcome.duration)
    }

    private enum Status { case exit(Int32), signal(Int32), timedOut(Double), lost }
    private struct Outcome {
        var status: Status
        var stdout: [UInt8]
        var stderr: [UInt8]
        var duration: Double
    }
    private struct LaunchError: Error { var message: String }

    /// The environment commands start with: this process's, as it was when first asked for,
    /// without a tag of ours (each command gets its own).
    private static let inheritedEnvironment: [String: String] = {
        var environment = ProcessInfo.processInfo.environment
        environment[CommandProcesses.tagVariable] = nil
        return environment
    }()
    /// `inheritedEnvironment` as `NAME=value` strings, made once: most runners add nothing to it.
    private static let inheritedVariables = inheritedEnvironment.map { "\($0.key)=\($0.value)" }

    /// The `NAME=value` strings a command starts with, before its tag.
    private var variables: [String] {
        guard !settings.environment.isEmpty else { return Self.inheritedVariables }
        var environment = Self.inheritedEnvironment.merging(settings.environment) { $1 }
        environment[CommandProcesses.tagVariable] = nil
        return environment.map { "\($0.key)=\($0.value)" }
    }

    /// Runs `shell -c command` as a clean child (see `CommandProcesses` for what "clean" and
    /// "ended" mean), pumping both pipes on this thread with `poll`, enforcing the timeout. Returns
    /// when the shell has exited and everything it left behind was killed.
    private func execute(_ command: String, in directory: String, timeoutSeconds: Double?) throws(LaunchError) -> Outcome {
        let processes = CommandProcesses.shared
        guard let task = processes.begin() else { throw LaunchError(message: "the run is being stopped") }
        var finished = false
        defer { if !finished { processes.finished(task) } }

        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard shoal_pipe(&outPipe) == 0 else { throw LaunchError(message: "pipe: \(errnoText())") }
        guard shoal_pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw LaunchError(message: "pipe: \(errnoText())")
        }
        defer { close(outPipe[0]); close(errPipe[0]) }

        let variables = self.variables + [processes.tag(task)]
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsedMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
        var pid: pid_t = 0
        let rc = withCStrings([settings.shell, "-c", command]) { argv in
            withCStrings(variables) { envp in
                shoal_spawn(&pid, settings.shell, argv, envp, directory, outPipe[1], errPipe[1])
            }
        }
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else { throw LaunchError(message: "\(settings.shell): \(String(cString: strerror(rc)))") }
        if !processes.started(task, pid: pid) { kill(-pid, SIGKILL) }
        let pidfd = shoal_pidfd_open(pid)
        // ESRCH: already reaped by someone else (its status is gone); ENOSYS: an old kernel.
        let alreadyGone = pidfd < 0 && errno == ESRCH
        defer { if pidfd >= 0 { close(pidfd) } }

        let killGraceMs = Double(min(max(settings.killGraceMs, 0), 3_600_000))
        var tails = [PipeTail(fd: outPipe[0], limit: settings.stdoutTailBytes), PipeTail(fd: errPipe[0], limit: settings.stderrTailBytes)]
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var timedOut = false
        var termSentAt: Double?, killSent = false
        // Until the shell exits: pump the pipes, wake for its pidfd, the timeout and the kill grace.
        while true {
            let now = elapsedMs()
            if let timeoutSeconds, !timedOut, now >= timeoutSeconds * 1000 {
                timedOut = true
                termSentAt = now
                kill(-pid, SIGTERM)
            }
            if let termSentAt, !killSent, now - termSentAt >= killGraceMs {
                kill(-pid, SIGKILL)
                killSent = true
            }
            var waitMs: Double = pidfd >= 0 ? -1 : 10  // without a pidfd, look at the shell every 10 ms
            if let timeoutSeconds, !timedOut { waitMs = Self.earliest(waitMs, timeoutSeconds * 1000 - now) }
            if let termSentAt, !killSent { waitMs = Self.earliest(waitMs, killGraceMs - (now - termSentAt)) }
            var fds = tails.filter(\.open).map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if pidfd >= 0 { fds.append(pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), waitMs < 0 ? -1 : Int32(min(waitMs.rounded(.up), 86_400_000)))
            for i in tails.indices where tails[i].open { tails[i].pump(&buffer) }
            let exited =
                pidfd >= 0
                ? fds.last!.revents != 0 : alreadyGone || CommandProcesses.isZombie(pid) || (kill(pid, 0) != 0 && errno == ESRCH)
            if exited { break }
        }
        // The shell has exited but is not reaped, so its process group number is still its own.
        kill(-pid, SIGKILL)
        processes.finished(task)
        finished = true
        var status: Int32 = 0
        var reaped: pid_t
        repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
        processes.reaped(pid)
        processes.sweepOrphans(shell: pid)
        // What the killed leftovers wrote last; bounded, in case something untracked holds a pipe.
        let drainUntil = elapsedMs() + Double(min(max(settings.drainMs, 0), 60_000))
        while tails.contains(where: \.open) {
            let left = drainUntil - elapsedMs()
            if left <= 0 { break }
            var fds = tails.filter(\.open).map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), Int32(left.rounded(.up)))
            for i in tails.indices where tails[i].open { tails[i].pump(&buffer) }
        }
        let duration = elapsedMs() / 1000
        let code = status & 0x7f
        let outcome: Status
        if reaped != pid {
            outcome = .lost
        } else if timedOut {
            outcome = .timedOut(timeoutSeconds ?? 0)
        } else if code == 0 {
            outcome = .exit((status >> 8) & 0xff)
        } else {
            outcome = .signal(code)
        }
        return Outcome(status: outcome, stdout: tails[0].tail, stderr: tails[1].tail, duration: duration)
    }

    private static func earliest(_ a: Double, _ b: Double) -> Double { a < 0 ? max(0, b) : min(a, max(0, b)) }
}

/// The end of one of a command's output pipes, kept to a bounded size.
private struct PipeTail {
    let fd: Int32
    let limit: Int
    var open = true
    var bytes: [UInt8] = []

    init(fd: Int32, limit: Int) {
        self.fd = fd
        self.limit = min(max(limit, 0), 1 << 30)
    }

    /// Reads what is there without blocking; marks the pipe closed at EOF.
    mutating func pump(_ buffer: inout [UInt8]) {
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                bytes += buffer[0..<n]
                if bytes.count > 2 * limit { bytes.removeFirst(bytes.count - limit) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n == 0 || errno != EAGAIN { open = false }
            return
        }
    }

    var tail: [UInt8] { bytes.count > limit ? Array(bytes.suffix(limit)) : bytes }
}

/// `body` with `strings` as a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
