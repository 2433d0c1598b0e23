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
        /// The command ran longer than the timeout; its process group was killed.
        case timedOut(seconds: Double)
        /// The caller gave no input path for a datum the command reads.
        case missingInput(datum: String)
        /// The command exited with 0 but did not create the output file of a written datum.
        case missingOutput(datum: String)
        /// The scratch folder could not be prepared (message from the file system).
        case setup(String)
        /// The shell could not be started.
        case launch(String)
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
        case .timedOut(let t): what = "timed out after \(t) s; its process group was killed"
        case .missingInput(let d): what = "no input file was given for datum '\(d)'"
        case .missingOutput(let d): what = "the command did not create its output '\(d)'"
        case .setup(let m): what = "cannot prepare the scratch folder: \(m)"
        case .launch(let m): what = "cannot start the shell: \(m)"
        }
        var s = "task '\(taskName)' failed: \(what)"
        if !stderrTail.isEmpty { s += "\nstderr:\n" + stderrTail }
        return s
    }
}

/// Runs one exec task synchronously: safe to call from any worker thread, uses no Swift
/// concurrency, and blocks the calling thread until the command ends.
///
/// Path convention inside the scratch folder `S` (fresh and private to one attempt):
/// - `S/in/<datum>`: the current version of every datum the task reads (`in`, `inout`,
///   `commutative`), a hard link to the caller's file (a read-only 0444 copy when linking fails;
///   keep version files read-only so a hard link cannot be written through). `{in:x}` renders this.
/// - `S/out/<datum>`: the new version of every datum the task writes (`out`, `inout`,
///   `commutative`). For `inout`/`commutative` it starts as a writable copy of the input; for `out`
///   it does not exist until the command creates it. `{out:x}`, `{inout:x}` and `{commutative:x}`
///   render this. After a zero exit every such file must exist.
/// - `concurrent` data are not copied: `{concurrent:x}` renders the caller's shared path, which all
///   tasks of the concurrent run use at once.
/// The command runs as `/bin/sh -c <command>` with `S` as working directory, stdin from
/// `/dev/null`, and stdout/stderr captured (last `stdoutTailBytes`/`stderrTailBytes` kept).
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
        /// After a timeout's SIGTERM, how long to wait before SIGKILL.
        public var killGraceMs: Int
        /// After the shell exits, how long to wait for processes it left behind that still hold
        /// its stdout/stderr before killing its process group.
        public var lingerMs: Int
        /// Variables added to (or replacing) the inherited environment.
        public var environment: [String: String]

        public init(
            shell: String = "/bin/sh", stderrTailBytes: Int = 64 * 1024, stdoutTailBytes: Int = 64 * 1024,
            killGraceMs: Int = 2000, lingerMs: Int = 1000, environment: [String: String] = [:]
        ) {
            self.shell = shell
            self.stderrTailBytes = stderrTailBytes
            self.stdoutTailBytes = stdoutTailBytes
            self.killGraceMs = killGraceMs
            self.lingerMs = lingerMs
            self.environment = environment
        }
    }

    /// One run of one exec task.
    public struct Request: Sendable, Hashable {
        /// The task's name, for errors.
        public var taskName: String
        /// The command; its `accesses` say what to prepare.
        public var command: CommandTemplate
        /// The scratch folder; created if missing, and it should be empty.
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
    /// output, or a setup/launch problem; the stderr tail is attached when the command ran.
    public func run(_ request: Request) throws(ExecTaskFailure) -> Result {
        let fm = FileManager.default
        let scratch = request.scratch.standardizedFileURL
        func fail(_ reason: ExecTaskFailure.Reason, stderr: [UInt8] = [], command: String = "") -> ExecTaskFailure {
            ExecTaskFailure(
                taskName: request.taskName, reason: reason, stderrTail: String(decoding: stderr, as: UTF8.self),
                command: command)
        }

        // Prepare S/in and S/out.
        var outputs: [String: String] = [:]
        do {
            try fm.createDirectory(at: scratch.appendingPathComponent("in"), withIntermediateDirectories: true)
            try fm.createDirectory(at: scratch.appendingPathComponent("out"), withIntermediateDirectories: true)
            for access in request.command.accesses {
                let datum = access.datum
                let inPath = Self.inputPath(scratch: scratch, datum: datum).path
                let outPath = Self.outputPath(scratch: scratch, datum: datum).path
                switch access.direction {
                case .concurrent:
                    guard let shared = request.sharedPaths[datum] else { throw fail(.missingInput(datum: datum)) }
                    outputs[datum] = shared
                case .out:
                    outputs[datum] = outPath
                case .in, .inout, .commutative:
                    guard let source = request.inputs[datum] else { throw fail(.missingInput(datum: datum)) }
                    do {
                        try fm.linkItem(atPath: source, toPath: inPath)
                    } catch {
                        try fm.copyItem(atPath: source, toPath: inPath)
                        try fm.setAttributes([.posixPermissions: 0o444], ofItemAtPath: inPath)
                    }
                    if access.direction != .in {
                        try fm.copyItem(atPath: source, toPath: outPath)
                        try fm.setAttributes([.posixPermissions: 0o644], ofItemAtPath: outPath)
                        outputs[datum] = outPath
                    }
                }
            }
        } catch let e as ExecTaskFailure {
            throw e
        } catch {
            throw fail(.setup("\(error)"))
        }

        let rendered = request.command.render { datum, direction in
            switch direction {
            case .in: Self.inputPath(scratch: scratch, datum: datum).path
            case .out, .inout, .commutative: Self.outputPath(scratch: scratch, datum: datum).path
            case .concurrent: request.sharedPaths[datum] ?? ""
            }
        }

        let outcome: Outcome
        do {
            outcome = try execute(rendered, in: scratch, timeoutSeconds: request.timeoutSeconds)
        } catch {
            throw fail(.launch("\(error)"), command: rendered)
        }
        switch outcome.status {
        case .timedOut(let t): throw fail(.timedOut(seconds: t), stderr: outcome.stderr, command: rendered)
        case .signal(let s): throw fail(.signal(s), stderr: outcome.stderr, command: rendered)
        case .exit(let code) where code != 0: throw fail(.exit(code: code), stderr: outcome.stderr, command: rendered)
        case .exit: break
        }
        for access in request.command.accesses where access.direction.writes && access.direction != .concurrent {
            if !fm.fileExists(atPath: Self.outputPath(scratch: scratch, datum: access.datum).path) {
                throw fail(.missingOutput(datum: access.datum), stderr: outcome.stderr, command: rendered)
            }
        }
        return Result(
            outputs: outputs, command: rendered, stdoutTail: outcome.stdout, stderrTail: outcome.stderr,
            durationSeconds: outcome.duration)
    }

    /// Whether `pid` has exited but is not reaped yet. Foundation on Linux notices a child's exit
    /// only when every process holding the child's inherited descriptors has gone, so a command
    /// that leaves `sleep 30 &` behind would look alive for 30 s; `/proc/<pid>/stat` tells the truth.
    private static func isZombie(_ pid: Int32) -> Bool {
        #if os(Linux)
            let fd = open("/proc/\(pid)/stat", O_RDONLY)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0, let paren = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")), paren + 2 < n else {
                return false
            }
            return buffer[paren + 2] == UInt8(ascii: "Z")
        #else
            return false
        #endif
    }

    private enum Status { case exit(Int32), signal(Int32), timedOut(Double) }
    private struct Outcome {
        var status: Status
        var stdout: [UInt8]
        var stderr: [UInt8]
        var duration: Double
    }

    /// Runs `shell -c command`, pumping both pipes on this thread with `poll`, enforcing the timeout.
    private func execute(_ command: String, in directory: URL, timeoutSeconds: Double?) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.shell)
        process.arguments = ["-c", command]
        process.currentDirectoryURL = directory
        if !settings.environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(settings.environment) { $1 }
        }
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")

        let start = DispatchTime.now().uptimeNanoseconds
        func elapsedMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
        try process.run()
        try? outPipe.fileHandleForWriting.close()
        try? errPipe.fileHandleForWriting.close()
        let pid = process.processIdentifier
        // Foundation starts the child in its own process group on Linux; only signal the group
        // when that is so, never our own.
        let ownGroup = getpgid(pid) == pid && pid != getpgrp()
        func signalGroup(_ sig: Int32) { _ = ownGroup ? kill(-pid, sig) : kill(pid, sig) }

        var tails: [(fd: Int32, open: Bool, bytes: [UInt8], limit: Int)] = [
            (outPipe.fileHandleForReading.fileDescriptor, true, [], settings.stdoutTailBytes),
            (errPipe.fileHandleForReading.fileDescriptor, true, [], settings.stderrTailBytes),
        ]
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var timedOut = false
        var termSentAt: Double?, killSent = false
        var exitedAt: Double?
        while true {
            var fds = tails.filter(\.open).map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if !fds.isEmpty {
                _ = poll(&fds, nfds_t(fds.count), 50)
                for p in fds where p.revents != 0 {
                    let index = tails.firstIndex { $0.fd == p.fd }!
                    let n = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        tails[index].bytes += buffer[0..<n]
                        if tails[index].bytes.count > 2 * tails[index].limit {
                            tails[index].bytes.removeFirst(tails[index].bytes.count - tails[index].limit)
                        }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        tails[index].open = false
                    }
                }
            } else {
                usleep(10_000)
            }
            let now = elapsedMs()
            if exitedAt == nil && (!process.isRunning || Self.isZombie(pid)) { exitedAt = now }
            if let exitedAt {
                if !tails.contains(where: \.open) { break }
                // Children left running in the background still hold the pipes: end them.
                if now - exitedAt > Double(settings.lingerMs) && ownGroup && !killSent {
                    kill(-pid, SIGKILL)
                    killSent = true
                }
                if now - exitedAt > Double(settings.lingerMs) * 3 { break }
                continue
            }
            if let timeoutSeconds, !timedOut, now > timeoutSeconds * 1000 {
                timedOut = true
                termSentAt = now
                signalGroup(SIGTERM)
            }
            if let termSentAt, !killSent, now - termSentAt > Double(settings.killGraceMs) {
                signalGroup(SIGKILL)
                killSent = true
            }
        }
        process.waitUntilExit()
        if timedOut && ownGroup { kill(-pid, SIGKILL) }  // anything that ignored SIGTERM
        try? outPipe.fileHandleForReading.close()
        try? errPipe.fileHandleForReading.close()
        let duration = elapsedMs() / 1000
        func tail(_ t: (fd: Int32, open: Bool, bytes: [UInt8], limit: Int)) -> [UInt8] {
            t.bytes.count > t.limit ? Array(t.bytes.suffix(t.limit)) : t.bytes
        }
        let status: Status
        if timedOut {
            status = .timedOut(timeoutSeconds ?? 0)
        } else if process.terminationReason == .uncaughtSignal {
            status = .signal(process.terminationStatus)
        } else {
            status = .exit(process.terminationStatus)
        }
        return Outcome(status: status, stdout: tail(tails[0]), stderr: tail(tails[1]), duration: duration)
    }
}
