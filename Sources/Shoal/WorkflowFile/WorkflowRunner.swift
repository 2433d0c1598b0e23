import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a parsed workflow file on the local runtime.
///
/// Each run makes its own folder `workDirectory/<workflow>.<n>`. Every version of a datum is an
/// immutable, read-only file in its `versions/` (commands get private copies, see `ExecRunner`);
/// each exec attempt gets a scratch folder of its own in its `scratch/`, emptied when it ends.
/// Outputs are written to the output folder at the end (see `prepare()` and `OutputFiles`).
public struct WorkflowRunner: Sendable {
    public var file: WorkflowFile
    public var registry: TaskRegistry
    public var options: RunOptions
    /// Where each run makes its own folder (`<workflow>.<n>`, holding its versions and scratch
    /// folders); created if missing.
    public var workDirectory: URL
    /// Where `outputs:` are written as `<dir>/<name>`, if given.
    public var outputDirectory: URL?
    /// Kill a command still running after this many seconds.
    public var commandTimeoutSeconds: Double?
    public var exec = ExecRunner()

    public init(
        file: WorkflowFile, registry: TaskRegistry, options: RunOptions, workDirectory: URL,
        outputDirectory: URL? = nil, commandTimeoutSeconds: Double? = nil
    ) {
        self.file = file
        self.registry = registry
        self.options = options
        self.workDirectory = workDirectory
        self.outputDirectory = outputDirectory
        self.commandTimeoutSeconds = commandTimeoutSeconds
    }

    /// What a run did.
    public struct Report: Sendable, Codable {
        public var workflow: String
        public var tasks: Int
        public var completed: Int
        public var failed: Int
        public var cancelled: Int
        public var retried: Int
        public var seconds: Double
        /// Output name → file written (when an output folder was given).
        public var outputs: [String: String]
        /// Output name → why it was not written (its task failed or was cancelled, or writing
        /// the file failed).
        public var outputsNotWritten: [String: String] = [:]
        /// Failures that did not abort the run (ignored, or that cancelled their successors).
        public var failures: [String]
    }

    /// Checks the file against the registry and the registered tasks' arguments. Throws a
    /// `WorkflowFileError` naming the file, line and field.
    public func validate() throws(WorkflowFileError) {
        try file.validate(knownTasks: Set(registry.names))
        for call in file.tasks {
            guard case .registered(let name, let argsJSON) = call.kind, let entry = registry.entry(name) else { continue }
            do {
                _ = try entry.make(argsJSON, nil)
            } catch {
                throw WorkflowFileError(
                    .invalidValue, file: file.path, location: call.location, task: call.name, field: "args",
                    message: "arguments do not fit task '\(name)': \(Self.describe(error))")
            }
        }
    }

    /// The folders of one run, made and checked by `prepare()` before any task runs.
    public struct Prepared: Sendable {
        /// This run's own folder inside the work folder (`<work>/<workflow>.<n>`, the first free
        /// n), so runs that share a work folder never collide.
        public var runDirectory: URL
        /// Immutable version files.
        public var versions: URL
        /// Scratch folders: each attempt has one to itself, emptied when the attempt ends and
        /// reused by a later one (creating and removing a folder per command costs more than
        /// emptying one); all are removed when the run ends.
        public var scratch: URL
        /// Where outputs go, created, with every output's target checked.
        public var outputDirectory: URL?
    }

    /// Checks and makes every folder the run writes to, before any task runs: the output folder
    /// (created if missing; it must be a folder this process can write in) and each output's
    /// target in it (nothing there yet, or a regular file, which the run will replace; a
    /// directory, a symbolic link, a device or anything else is refused, never removed), and this
    /// run's folder in the work folder. Throws `RunSetupError` in plain words.
    public func prepare() throws(RunSetupError) -> Prepared {
        let work = workDirectory.standardizedFileURL
        let outputs = outputDirectory?.standardizedFileURL
        let outputRole = "output folder (--output-dir)", workRole = "work folder (--work-dir)"
        if let outputs { try Self.checkFolder(outputs.path, role: outputRole) }
        try Self.checkFolder(work.path, role: workRole)
        if let dir = outputs {
            for output in file.outputs {
                let target = dir.appendingPathComponent(output.name).path
                if let kind = FileOps.kind(target), kind != .regular {
                    throw RunSetupError(
                        "the output '\(output.name)' would replace \(target), which is \(kind); only a regular "
                            + "file is ever replaced: move it away or choose another --output-dir")
                }
            }
        }
        if let outputs { try Self.makeFolder(outputs.path, role: outputRole) }
        try Self.makeFolder(work.path, role: workRole)
        let base = String(file.name.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }.prefix(100))
        var n = 1
        while true {
            let run = work.appendingPathComponent("\(base.isEmpty ? "run" : base).\(n)")
            if mkdir(run.path, 0o755) == 0 {
                let versions = run.appendingPathComponent("versions"), scratch = run.appendingPathComponent("scratch")
                do throws(FileError) {
                    try FileOps.makeDirectory(versions.path)
                    try FileOps.makeDirectory(scratch.path)
                } catch {
                    throw RunSetupError("the work folder (--work-dir): \(error)")
                }
                return Prepared(runDirectory: run, versions: versions, scratch: scratch, outputDirectory: outputs)
            }
            guard errno == EEXIST, n < 1_000_000 else {
                throw RunSetupError("the work folder (--work-dir): \(FileError("create the folder", run.path))")
            }
            n += 1
        }
    }

    /// Removes `folder` and everything in it (read-only files and folders included, names that
    /// are not UTF-8 too), tolerating what is removed or added under it meanwhile (a task's own
    /// clean-up at the same moment): tries again, a bounded number of times, until it is gone.
    public static func removeFolder(_ folder: URL) {
        for _ in 0..<50 {
            FileOps.removeTree(folder.path)
            if FileOps.kind(folder.path) == nil { return }
            usleep(10_000)
        }
    }

    /// Checks that `path` is a folder this process can create files in, or one it can make (the
    /// nearest existing folder above it is a folder it can write in), without making anything.
    /// Symbolic links to folders are followed. `role` names it in the error ("output folder
    /// (--output-dir)"). Check every folder first and make them after (`makeFolder`), so a
    /// refused run leaves nothing behind.
    public static func checkFolder(_ path: String, role: String) throws(RunSetupError) {
        var existing = path
        while FileOps.kind(existing) == nil {
            guard let slash = existing.lastIndex(of: "/") else {
                existing = "."
                break
            }
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        if !FileOps.isDirectory(existing) {
            let kind = FileOps.kind(existing).map { "\($0)" } ?? "missing"
            throw RunSetupError(
                existing == path
                    ? "the \(role) '\(path)' is \(kind), not a folder"
                    : "the \(role) '\(path)' cannot be made: '\(existing)' is \(kind), not a folder")
        }
        guard access(existing, W_OK | X_OK) == 0 else {
            throw RunSetupError("the \(role): \(FileError(existing == path ? "create files in" : "create folders in", existing))")
        }
    }

    /// Makes the folder `path` (and its parents) that `checkFolder` accepted, and tries a file in
    /// it, so a folder this process cannot write in is found now rather than by a task.
    public static func makeFolder(_ path: String, role: String) throws(RunSetupError) {
        do throws(FileError) {
            try FileOps.makeDirectories(path)
        } catch {
            throw RunSetupError("the \(role): \(error)")
        }
        let probe = path + "/.shoal-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw RunSetupError("the \(role): \(FileError("create files in", path))")
        }
        close(fd)
        unlink(probe)
    }

    /// Runs the workflow and waits for it. `progress` is called from time to time with the
    /// counters so far (on a background task).
    public func run(progress: (@Sendable (RunStatistics, Int) -> Void)? = nil) async throws -> Report {
        try validate()
        return try await execute(try prepare(), progress: progress)
    }

    /// Runs the workflow in folders `prepare()` made, after checking the file again (its data
    /// files may have changed since). When a task failure aborts the run, the outputs that were
    /// produced are still written, and a `WorkflowRunFailure` carries the report (with the outputs
    /// that were not) and the cause.
    public func run(_ prepared: Prepared, progress: (@Sendable (RunStatistics, Int) -> Void)? = nil) async throws
        -> Report
    {
        try validate()
        return try await execute(prepared, progress: progress)
    }

    /// `run` once the file is checked and the folders made.
    private func execute(_ prepared: Prepared, progress: (@Sendable (RunStatistics, Int) -> Void)?) async throws
        -> Report
    {
        let files = VersionFiles(directory: prepared.versions)
        let scratch = ScratchFolders(root: prepared.scratch.path)
        defer { scratch.removeAll() }
        let clock = ContinuousClock()
        let start = clock.now
        let startDate = Date()
        var options = self.options
        options.name = options.name ?? file.name
        let file = self.file
        let registry = self.registry
        let exec = self.exec
        let timeout = commandTimeoutSeconds
        let outputDirectory = prepared.outputDirectory

        // `Shoal.run` ends with a barrier that throws the abort cause again: keep what the
        // program saw, so the partial report survives.
        var outcome: (report: Report, cause: (any Error)?)?
        do {
            try await Shoal.run(options) { wf in outcome = try await Self.runTasks(
                in: wf, file: file, registry: registry, exec: exec, files: files, scratch: scratch, timeout: timeout,
                outputDirectory: outputDirectory, progress: progress, start: start, clock: clock) }
        } catch {
            guard outcome != nil else { throw error }
        }
        let (report, cause) = outcome!
        if let store = options.store {
            try RunRecords.record(report, startedAt: startDate, in: store)
        }
        if let cause { throw WorkflowRunFailure(cause: cause, report: report) }
        return report
    }

    /// The program of a run: the file's data and tasks submitted, the barrier, the outputs.
    private static func runTasks(
        in wf: Workflow, file: WorkflowFile, registry: TaskRegistry, exec: ExecRunner, files: VersionFiles,
        scratch: ScratchFolders,
        timeout: Double?, outputDirectory: URL?, progress: (@Sendable (RunStatistics, Int) -> Void)?,
        start: ContinuousClock.Instant, clock: ContinuousClock
    ) async throws -> (Report, (any Error)?) {
        var refs: [String: DataRef<FileValue>] = [:]
        for datum in file.data {
            let path: String
            switch datum.value {
            case .inline(let bytes): path = try files.write(bytes, for: datum.name)
            case .file(let source): path = try files.copy(source, for: datum.name)
            }
            refs[datum.name] = wf.value(FileValue(path: path), name: datum.name)
        }
        let ticker = progress.map { report in
            Task {
                while !Task.isCancelled {
                    report(wf.statistics, file.tasks.count)
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        defer { ticker?.cancel() }

        for call in file.tasks {
            var parameters: [DataParameter] = []
            for access in call.accesses {
                let ref = refs[access.datum] ?? wf.placeholder(FileValue.self, name: access.datum)
                refs[access.datum] = ref
                parameters.append(DataParameter(datum: ref.datum, direction: access.direction, name: access.datum))
            }
            let labels = call.accesses.map(\.datum)
            let policy = FailurePolicy(retries: UInt16(clamping: call.retries), action: call.onFailure)
            let body: @Sendable (inout TaskContext) throws -> Void
            switch call.kind {
            case .exec:
                body = { context in
                    try WorkflowRunner.runExec(
                        call, &context, exec: exec, files: files, scratch: scratch, timeout: timeout)
                }
            case .registered(let name, let argsJSON):
                let resultSlot = call.accesses.lastIndex { $0.direction == .out }
                body = try registry.entry(name)!.make(argsJSON, resultSlot)
            }
            wf.enqueue(
                .closure(name: call.name, labels: labels), parameters.map { ($0.datum, $0.direction) }, policy,
                args: body)
        }
        var cause: (any Error)?
        do {
            try await wf.barrier()
        } catch {
            cause = error
        }
        progress?(wf.statistics, file.tasks.count)

        var written: [String: String] = [:]
        var notWritten: [String: String] = [:]
        if let outputDirectory {
            for output in file.outputs {
                guard let ref = refs[output.name] else { continue }
                let value: Any
                do {
                    value = try await wf.engine.value(of: ref.datum)
                } catch {
                    notWritten[output.name] = "\(error)"
                    continue
                }
                let target = outputDirectory.appendingPathComponent(output.name).path
                do {
                    try OutputFiles.replace(target, with: value, name: output.name)
                    written[output.name] = target
                } catch {
                    notWritten[output.name] = "\(error)"
                    if cause == nil { cause = error }
                }
            }
        }
        let s = wf.statistics
        let elapsed = clock.now - start
        let report = Report(
            workflow: file.name, tasks: file.tasks.count, completed: s.completed, failed: s.failed,
            cancelled: s.cancelled, retried: s.retried,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
            outputs: written, outputsNotWritten: notWritten,
            failures: wf.failures.map { "task '\($0.task)': \($0.message)" })
        return (report, cause)
    }

    /// One attempt of an exec task: inputs as files, the command, outputs moved into new versions.
    static func runExec(
        _ call: TaskCall, _ context: inout TaskContext, exec: ExecRunner, files: VersionFiles, scratch: ScratchFolders,
        timeout: Double?
    ) throws {
        var inputs: [String: String] = [:]
        var shared: [String: String] = [:]
        for (i, access) in call.accesses.enumerated() {
            switch access.direction {
            case .in, .inout, .commutative:
                inputs[access.datum] = try files.path(of: context, at: i, datum: access.datum)
            case .concurrent:
                shared[access.datum] = try files.sharedPath(of: context, at: i, datum: access.datum)
            case .out:
                break
            }
        }
        let folder = scratch.take()
        defer { scratch.giveBack(folder) }
        let result = try exec.run(
            ExecRunner.Request(
                call: call, scratch: URL(fileURLWithPath: folder, isDirectory: true), inputs: inputs, sharedPaths: shared,
                timeoutSeconds: timeout))
        for (i, access) in call.accesses.enumerated() where access.direction.writes {
            if access.direction == .concurrent {
                try context.setOutput(at: i, FileValue(path: shared[access.datum]!))
            } else {
                let produced = result.outputs[access.datum]!
                try context.setOutput(at: i, FileValue(path: try files.adopt(produced, for: access.datum)))
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing argument '\(key.stringValue)'"
        case DecodingError.typeMismatch(let type, let c):
            "argument '\(c.codingPath.map(\.stringValue).joined(separator: "."))' is not \(type)"
        case DecodingError.valueNotFound(let type, let c):
            "argument '\(c.codingPath.map(\.stringValue).joined(separator: "."))' needs a \(type)"
        case DecodingError.dataCorrupted(let c): c.debugDescription
        default: "\(error)"
        }
    }
}

/// The immutable files that hold workflow-file versions.
final class VersionFiles: Sendable {
    let directory: URL
    private let counter = Atomic<Int>(0)
    /// Concurrent groups' shared files, by the group's version.
    private let shared = Mutex<[UInt32: String]>([:])

    init(directory: URL) { self.directory = directory }

    func uniqueName(_ base: String) -> String {
        let safe = String(base.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        return "\(safe).\(counter.add(1, ordering: .relaxed).newValue)"
    }

    /// Writes a new read-only version file holding `bytes`.
    func write(_ bytes: [UInt8], for datum: String) throws -> String {
        let path = directory.appendingPathComponent(uniqueName(datum)).path
        try FileOps.writeFile(bytes, to: path, mode: 0o444)
        return path
    }

    /// Copies `source` into a new read-only version file.
    func copy(_ source: String, for datum: String) throws -> String {
        let path = directory.appendingPathComponent(uniqueName(datum)).path
        try FileOps.copyFile(from: source, to: path, mode: 0o444)
        return path
    }

    /// Moves a file a command produced into a new read-only version file. A file with other
    /// hard links (`ln ~/notes {out:y}`) is copied instead: its inode is not the run's to make
    /// read-only, and whoever holds the other link could change the version through it.
    func adopt(_ produced: String, for datum: String) throws -> String {
        let path = directory.appendingPathComponent(uniqueName(datum)).path
        var s = stat()
        guard lstat(produced, &s) == 0 else { throw FileError("inspect", produced) }
        if s.st_nlink > 1 {
            try FileOps.copyFile(from: produced, to: path, mode: 0o444)
            unlink(produced)
            return path
        }
        guard rename(produced, path) == 0 else { throw FileError("move", produced) }
        guard chmod(path, 0o444) == 0 else { throw FileError("set the mode of", path) }
        return path
    }

    /// The file of the parameter at `position` (bytes from a registered task become a file).
    func path(of context: borrowing TaskContext, at position: Int, datum: String) throws -> String {
        if let f = try? context.input(at: position, as: FileValue.self) { return f.path }
        return try write(context.input(at: position, as: [UInt8].self), for: datum)
    }

    /// The one writable file a concurrent group shares: a copy of the version before the group,
    /// made by the first member that runs.
    func sharedPath(of context: borrowing TaskContext, at position: Int, datum: String) throws -> String {
        guard let group = context.accesses[position].written?.raw else {
            preconditionFailure("concurrent access without a written version")
        }
        let base = try path(of: context, at: position, datum: datum)
        return try shared.withLock { paths in
            if let p = paths[group] { return p }
            let p = directory.appendingPathComponent(uniqueName(datum + ".shared")).path
            try FileOps.copyFile(from: base, to: p, mode: 0o644)
            paths[group] = p
            return p
        }
    }
}

/// The scratch folders of one run: an attempt takes one to itself and gives it back emptied, so a
/// run of many short commands does not create and remove a folder for each (on ext4 that is a
/// block allocated, freed and discarded every time, and both workers wait on the parent folder's
/// lock). At most one folder per attempt running at once; all removed by `removeAll()`.
final class ScratchFolders: Sendable {
    let root: String
    private let free = Mutex<(folders: [String], made: Int)>(([], 0))

    init(root: String) { self.root = root }

    /// A folder for one attempt: empty, private, writable.
    func take() -> String {
        free.withLock { state in
            if let folder = state.folders.popLast() { return folder }
            state.made += 1
            return root + "/" + String(state.made)
        }
    }

    /// Empties `folder` and keeps it for a later attempt; a folder that cannot be emptied (the
    /// command made something this process cannot remove) is removed as far as it can be and not
    /// reused.
    func giveBack(_ folder: String) {
        guard FileOps.empty(folder) else {
            FileOps.removeTree(folder)
            return
        }
        free.withLock { $0.folders.append(folder) }
    }

    /// Removes every folder this run made.
    func removeAll() {
        let count = free.withLock { state -> Int in
            state.folders = []
            return state.made
        }
        for i in stride(from: 1, through: count, by: 1) { FileOps.removeTree(root + "/" + String(i)) }
    }
}

/// Records of finished runs in the shard's `workflows` table, keyed
/// `<workflow>/<start time, ISO 8601 with milliseconds>-<process id>-<run number>`, so runs never
/// overwrite each other's records.
public enum RunRecords {
    private static let runs = Atomic<Int>(0)

    public static func record(_ report: WorkflowRunner.Report, startedAt start: Date, in store: any KeyValueShard) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let n = runs.add(1, ordering: .relaxed).newValue
        let key = "\(report.workflow)/\(formatter.string(from: start))-\(ProcessInfo.processInfo.processIdentifier)-\(n)"
        try store.put(Array(key.utf8), Array(try encoder.encode(report)), in: .workflows)
    }
}

/// A problem with what the run was asked to write to (an output, work or data folder), found
/// before any task ran. The `shoal` command prints it and exits with 2.
public struct RunSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A run that a task failure (or an output that could not be written) stopped: the cause, and
/// the report of what was done, including the outputs written and those that were not.
public struct WorkflowRunFailure: Error, Sendable, CustomStringConvertible {
    public var cause: any Error
    public var report: WorkflowRunner.Report

    public var description: String { "\(cause)" }
}

/// Writing a workflow's outputs where `shoal run --output-dir` writes them, for runs elsewhere
/// (a simulated cluster's outputs are bytes its peers hold).
public enum WorkflowOutputs {
    /// Replaces the regular file `target` (or creates it) with `bytes`, atomically, never through a
    /// link (`OutputFiles`).
    public static func write(_ bytes: [UInt8], to target: String, name: String) throws {
        try OutputFiles.replace(target, with: bytes, name: name)
    }
}

/// Writing outputs into the output folder: never through a link, never over anything but a
/// regular file, and atomically (a file beside the target, then `rename`), so a reader sees the
/// old output or the new one, and a directory or device that appeared at the target during the
/// run is left as it is.
enum OutputFiles {
    static func replace(_ target: String, with value: Any, name: String) throws {
        if let kind = FileOps.kind(target), kind != .regular {
            throw RunSetupError("the output '\(name)' was not written: \(target) is now \(kind)")
        }
        let temporary = target + ".shoal-\(getpid())-\(counter.add(1, ordering: .relaxed).newValue).tmp"
        do {
            switch value {
            case let file as FileValue:
                try FileOps.copyFile(from: file.path, to: temporary, mode: 0o644)
            case let bytes as [UInt8]:
                try FileOps.writeFile(bytes, to: temporary, mode: 0o644)
            case let other:
                throw ShoalError.typeMismatch(name: name, expected: "a file or bytes", actual: "\(type(of: other))")
            }
            guard rename(temporary, target) == 0 else { throw FileError("replace", target) }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    private static let counter = Atomic<Int>(0)
}
