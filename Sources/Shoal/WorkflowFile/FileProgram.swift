import Foundation
import ShoalCore
import ShoalSimulation

/// A workflow file as the cluster runs it: the same calls a local run submits (`WorkflowRunner`),
/// as `WorkflowTaskSpec`s with real bodies, over data numbered in order of first appearance.
extension ProgramWorkflow {
    /// The program of `file`: its data (declared and implicit, then those first written by a task)
    /// with their initial bytes (read now, for a `file:` datum), its tasks in submission order and
    /// its outputs. Every registered task's name must be in the registry the runner is given.
    public init(file: WorkflowFile) throws {
        var index: [String: Int] = [:]
        var initial: [[UInt8]] = []
        func datum(_ name: String) -> Int {
            if let d = index[name] { return d }
            index[name] = initial.count
            initial.append([])  // first written by a task: it has no value before
            return initial.count - 1
        }
        for d in file.data {
            let i = datum(d.name)
            switch d.value {
            case .inline(let bytes): initial[i] = bytes
            case .file(let path): initial[i] = try FileValue(path: path).bytes()
            }
        }
        var tasks: [WorkflowTaskSpec] = []
        for call in file.tasks {
            let body: TaskBody
            switch call.kind {
            case .exec(let command): body = .exec(command: command.description)
            case .registered(let name, let argsJSON): body = .registered(name: name, arguments: argsJSON)
            }
            tasks.append(
                WorkflowTaskSpec(
                    body: body, accesses: call.accesses.map { .init(datum($0.datum), $0.direction) },
                    policy: FailurePolicy(retries: UInt16(clamping: call.retries), action: call.onFailure),
                    label: call.name))
        }
        let spec = WorkflowSpec(name: file.name, dataCount: initial.count, initialBytes: 0, tasks: tasks)
        self.init(
            spec: spec, initial: initial, outputs: file.outputs.map { Output(name: $0.name, datum: datum($0.name)) },
            source: file.path)
    }

    /// Runs `file` on the local engine (`WorkflowRunner`, as `shoal run` does) in a folder of its
    /// own under `workDirectory`, and keeps what it made as `expected`: the checker's reference
    /// for a cluster run of the same program.
    public mutating func recordLocalRun(of file: WorkflowFile, registry: TaskRegistry, workDirectory: URL) async throws {
        let outputs = workDirectory.appendingPathComponent("reference-outputs", isDirectory: true)
        var runner = WorkflowRunner(
            file: file, registry: registry, options: RunOptions(), workDirectory: workDirectory, outputDirectory: outputs)
        runner.options.name = file.name
        let fails: Bool
        do {
            _ = try await runner.run()
            fails = false
        } catch is WorkflowRunFailure {
            fails = true
        }
        defer { WorkflowRunner.removeFolder(outputs) }
        expected = Expected(
            fails: fails,
            outputs: self.outputs.map { output in
                (try? FileValue(path: outputs.appendingPathComponent(output.name).path).bytes()).map(PayloadDigest.value(of:))
            })
    }
}
