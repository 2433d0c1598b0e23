import Foundation
import Synchronization

/// Runs a parsed workflow file on the local runtime.
///
/// Every version of a datum is an immutable file under `workDirectory/versions/` (read-only, so a
/// command cannot write through the hard link `ExecRunner` gives it); each exec attempt gets a
/// fresh scratch folder under `workDirectory/scratch/`, removed when it ends. Outputs are copied
/// to the output folder at the end.
public struct WorkflowRunner: Sendable {
    public var file: WorkflowFile
    public var registry: TaskRegistry
    public var options: RunOptions
    /// Where versions and scratch folders live; created if missing.
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

    /// Runs the workflow and waits for it. `progress` is called from time to time with the
    /// counters so far (on a background task).
    public func run(progress: (@Sendable (RunStatistics, Int) -> Void)? = nil) async throws -> Report {
        try validate()
        let fm = FileManager.default
        let versions = workDirectory.appendingPathComponent("versions")
        let scratch = workDirectory.appendingPathComponent("scratch")
        try fm.createDirectory(at: versions, withIntermediateDirectories: true)
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        let files = VersionFiles(directory: versions)
        let clock = ContinuousClock()
        let start = clock.now
        let startDate = Date()
        var options = self.options
        options.name = options.name ?? file.name
        let file = self.file
        let registry = self.registry
        let exec = self.exec
        let timeout = commandTimeoutSeconds
        let outputDirectory = self.outputDirectory

        let report = try await Shoal.run(options) { wf -> Report in
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
                            call, &context, exec: exec, files: files, scratchRoot: scratch, timeout: timeout)
                    }
                case .registered(let name, let argsJSON):
                    let resultSlot = call.accesses.lastIndex { $0.direction == .out }
                    body = try registry.entry(name)!.make(argsJSON, resultSlot)
                }
                wf.enqueue(
                    .closure(name: call.name, labels: labels), parameters.map { ($0.datum, $0.direction) }, policy,
                    args: body)
            }
            try await wf.barrier()
            progress?(wf.statistics, file.tasks.count)

            var written: [String: String] = [:]
            if let outputDirectory {
                try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
                for output in file.outputs {
                    guard let ref = refs[output.name] else { continue }
                    let target = outputDirectory.appendingPathComponent(output.name)
                    try? FileManager.default.removeItem(at: target)
                    switch try await wf.engine.value(of: ref.datum) {
                    case let file as FileValue:
                        try FileManager.default.copyItem(atPath: file.path, toPath: target.path)
                    case let bytes as [UInt8]:
                        try Data(bytes).write(to: target)
                    case let other:
                        throw ShoalError.typeMismatch(
                            name: output.name, expected: "a file or bytes", actual: "\(type(of: other))")
                    }
                    try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: target.path)
                    written[output.name] = target.path
                }
            }
            let s = wf.statistics
            let elapsed = clock.now - start
            return Report(
                workflow: file.name, tasks: file.tasks.count, completed: s.completed, failed: s.failed,
                cancelled: s.cancelled, retried: s.retried,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                outputs: written, failures: wf.failures.map { "task '\($0.task)': \($0.message)" })
        }
        if let store = options.store {
            try RunRecords.record(report, startedAt: startDate, in: store)
        }
        return report
    }

    /// One attempt of an exec task: inputs as files, the command, outputs moved into new versions.
    static func runExec(
        _ call: TaskCall, _ context: inout TaskContext, exec: ExecRunner, files: VersionFiles, scratchRoot: URL,
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
        let folder = scratchRoot.appendingPathComponent(files.uniqueName(call.name))
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try exec.run(
            ExecRunner.Request(call: call, scratch: folder, inputs: inputs, sharedPaths: shared, timeoutSeconds: timeout))
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
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o444])
        else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        return path
    }

    /// Copies `source` into a new read-only version file.
    func copy(_ source: String, for datum: String) throws -> String {
        let path = directory.appendingPathComponent(uniqueName(datum)).path
        try FileManager.default.copyItem(atPath: source, toPath: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
        return path
    }

    /// Moves a file a command produced into a new read-only version file.
    func adopt(_ produced: String, for datum: String) throws -> String {
        let path = directory.appendingPathComponent(uniqueName(datum)).path
        try FileManager.default.moveItem(atPath: produced, toPath: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
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
            try FileManager.default.copyItem(atPath: base, toPath: p)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: p)
            paths[group] = p
            return p
        }
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
