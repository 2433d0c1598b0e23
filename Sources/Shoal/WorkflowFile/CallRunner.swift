import Foundation
import ShoalCore
import ShoalShell
import ShoalSimulation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a task call's real body on bytes, away from a local run: the executor of a peer that holds
/// a task's inputs as bytes (today the simulated peers; `ClusterSimulation` calls it).
///
/// An exec command runs through the same hardened `ExecRunner` as `shoal run`: each input's bytes
/// become a read-only version file, the command runs in a scratch folder of its own, and each
/// output is read back as bytes. A registered task runs from the registry on a task context whose
/// values are its inputs' bytes, as a workflow file's registered task does locally; what it writes
/// must be bytes or a file (workflow-file data are files), which leave the peer as bytes.
///
/// The local semantics hold: an input without a value (its writer's failure was ignored) fails the
/// task that reads it; an `out` the body did not write fails it; an `inout` or `commutative` datum
/// it left alone keeps the value it read.
public final class CallRunner: TaskBodyRunner {
    public let registry: TaskRegistry
    public var exec: ExecRunner
    /// Kill a command still running after this many seconds.
    public var timeoutSeconds: Double?
    /// This runner's folder (version files and the scratch folder), removed with the runner.
    public let folder: URL
    /// When set, every body call is timed on the wall clock and recorded here (`shoal simulate
    /// --record-costs`). The record is the shell's: what the simulator advances by stays the
    /// task's modelled cost, so the run itself is as deterministic as without it.
    public var timings: CallTimings?
    private var versionCount = 0

    /// Makes a private folder under `workDirectory` (the system's temporary folder by default).
    public init(registry: TaskRegistry, workDirectory: URL? = nil, timeoutSeconds: Double? = nil) throws {
        self.registry = registry
        self.exec = ExecRunner()
        self.timeoutSeconds = timeoutSeconds
        let parent = (workDirectory ?? URL(fileURLWithPath: NSTemporaryDirectory())).standardizedFileURL.path
        try FileOps.makeDirectories(parent)
        var template = Array((parent + "/shoal-calls.XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FileError("create a folder in", parent)
        }
        folder = URL(fileURLWithPath: String(cString: made), isDirectory: true)
        try FileOps.makeDirectory(folder.path + "/versions")
    }

    deinit { WorkflowRunner.removeFolder(folder) }

    public var catalogue: [UInt64] { [CatalogueKey.exec] + registry.catalogue }

    public func run(
        _ body: TaskBody, workflow: String, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) -> Result<[[UInt8]], TaskFailure> {
        guard timings != nil else {
            return runBody(body, label: label, accesses: accesses, inputs: inputs, attempt: attempt)
        }
        let clock = ContinuousClock()
        let started = clock.now
        let result = runBody(body, label: label, accesses: accesses, inputs: inputs, attempt: attempt)
        let micros = CallTimings.micros(clock.now - started)
        let succeeded = if case .success = result { true } else { false }
        timings?.record(workflow: workflow, label: label, micros: micros, succeeded: succeeded)
        return result
    }

    private func runBody(
        _ body: TaskBody, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?], attempt: Int
    ) -> Result<[[UInt8]], TaskFailure> {
        let directions = accesses.map(\.direction)
        do {
            switch body {
            case .modelled:
                return .failure(TaskFailure(message: "task '\(label)' has a modelled body, which only a scenario runs"))
            case .exec(let command):
                return .success(try runExec(command, label: label, directions: directions, inputs: inputs))
            case .registered(let name, let arguments):
                return .success(
                    try runRegistered(name, arguments, label: label, accesses: accesses, inputs: inputs, attempt: attempt))
            }
        } catch let failure as TaskFailure {
            return .failure(failure)
        } catch let failure as ExecTaskFailure {
            var plain = failure
            plain.stderrTail = ""
            return .failure(TaskFailure(message: "\(plain)", exitStatus: failure.exitCode, stderrTail: failure.stderrTail))
        } catch {
            return .failure(TaskFailure(message: "task '\(label)' failed: \(error)"))
        }
    }

    /// A read-only version file holding `bytes`.
    private func versionFile(_ bytes: [UInt8], mode: mode_t = 0o444) throws -> String {
        versionCount += 1
        let path = folder.path + "/versions/" + String(versionCount)
        try FileOps.writeFile(bytes, to: path, mode: mode)
        return path
    }

    private func runExec(_ command: String, label: String, directions: [Direction], inputs: [[UInt8]?]) throws -> [[UInt8]] {
        let template: CommandTemplate
        do { template = try CommandTemplate(parsing: command) } catch {
            throw TaskFailure(message: "task '\(label)': its command does not parse: \(error)")
        }
        guard template.accesses.map(\.direction) == directions else {
            throw TaskFailure(message: "task '\(label)': its command's placeholders are not the call's accesses")
        }
        var made: [String] = []
        defer { for path in made { unlink(path) } }
        var paths: [String: String] = [:], shared: [String: String] = [:]
        var next = 0
        for access in template.accesses where access.direction.reads {
            defer { next += 1 }
            guard let bytes = inputs[next] else { throw Self.noValue(label, access.datum) }
            // A concurrent member changes its group's value in place: a writable copy of its own.
            let path = try versionFile(bytes, mode: access.direction == .concurrent ? 0o644 : 0o444)
            made.append(path)
            if access.direction == .concurrent { shared[access.datum] = path } else { paths[access.datum] = path }
        }
        let scratch = folder.appendingPathComponent("scratch", isDirectory: true)
        defer { FileOps.removeTree(scratch.path) }
        let result = try exec.run(
            ExecRunner.Request(
                taskName: label, command: template, scratch: scratch, inputs: paths, sharedPaths: shared,
                timeoutSeconds: timeoutSeconds))
        return try template.accesses.filter(\.direction.writes).map { access in
            try FileValue(path: result.outputs[access.datum]!).bytes()
        }
    }

    private func runRegistered(
        _ name: String, _ arguments: [UInt8], label: String, accesses calls: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) throws -> [[UInt8]] {
        let directions = calls.map(\.direction)
        guard let entry = registry.entry(name) else {
            throw TaskFailure(message: "task '\(label)': no registered task '\(name)' on this peer")
        }
        let resultSlot = directions.lastIndex(of: .out)
        let body = try entry.make(arguments, resultSlot)
        var boxes: [ValueBox?] = []
        var next = 0
        for d in directions {
            guard d.reads else {
                boxes.append(nil)
                continue
            }
            boxes.append(inputs[next].map { ValueBox(EncodedValue(bytes: $0)) })
            next += 1
        }
        // The program's own datum ids: a Swift task reads its data by the references in its
        // arguments.
        let accesses = calls.map { a in
            ResolvedAccess(datum: DatumID(raw: UInt32(bitPattern: a.datum)), direction: a.direction, read: nil, written: nil)
        }
        var context = TaskContext(taskName: label, attempt: attempt, accesses: accesses, inputs: boxes)
        try body(&context)
        var outputs: [[UInt8]] = []
        for (i, d) in directions.enumerated() where d.writes {
            // Unwritten, an `inout` or `commutative` datum keeps the value read (decoded or not).
            guard let value = context.outputs[i] ?? (d == .out ? nil : boxes[i]?.value) else {
                throw TaskFailure(message: "task '\(label)' failed: it did not write its out datum (parameter \(i))")
            }
            if let encoded = value as? EncodedValue {
                outputs.append(encoded.bytes)
            } else {
                do { outputs.append(try PeerValues.encode(value)) } catch {
                    throw TaskFailure(message: "task '\(label)' wrote parameter \(i): \(error)")
                }
            }
        }
        return outputs
    }

    static func noValue(_ label: String, _ datum: String) -> TaskFailure {
        TaskFailure(
            message: "task '\(label)' reads '\(datum)', which has no value (its writer failed and the failure was ignored)")
    }
}
