import ArgumentParser
import Foundation
import Shoal
import ShoalExamples

/// `shoal run FILE`: runs a workflow file on this machine.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workflow file (YAML) on this machine, using every core.",
        discussion: "Exit codes: 0 success, 1 a task failed, 2 the file is malformed or refers to unknown tasks or data.")

    @Argument(help: "The workflow file.") var file: String
    @Option(help: "Write the workflow's outputs here as DIR/<name>.") var outputDir: String?
    @Option(help: "Record the run (and keep persistent objects) in the LMDB store in this folder.") var dataDir: String?
    @Option(help: "Where versions and scratch folders go (default: a temporary folder, removed after the run).")
    var workDir: String?
    @Option(help: "Kill a command still running after this many seconds.") var timeout: Double?
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount

    func run() async throws {
        try await exitOnError {
            let workflow = try WorkflowFile.load(path: file)
            let options: RunOptions
            if let dataDir {
                options = try RunOptions(runtime: RuntimeSettings(workers: workers), dataDirectory: dataDir)
            } else {
                options = RunOptions(runtime: RuntimeSettings(workers: workers))
            }
            let work = URL(fileURLWithPath: workDir ?? NSTemporaryDirectory() + "shoal-run-\(UUID().uuidString)")
            defer { if workDir == nil { try? FileManager.default.removeItem(at: work) } }
            let runner = WorkflowRunner(
                file: workflow, registry: ExampleTasks.registry, options: options, workDirectory: work,
                outputDirectory: outputDir.map { URL(fileURLWithPath: $0) }, commandTimeoutSeconds: timeout)
            let bar = ProgressLine(workflow.name)
            let report = try await runner.run { stats, total in
                bar.update(done: stats.completed + stats.failed + stats.cancelled, total: total, failed: stats.failed)
            }
            bar.finish()
            print("workflow '\(report.workflow)': \(report.completed) of \(report.tasks) tasks completed in \(String(format: "%.3f", report.seconds)) s"
                + (report.retried > 0 ? ", \(report.retried) retried" : "")
                + (report.failed > 0 ? ", \(report.failed) failed" : "")
                + (report.cancelled > 0 ? ", \(report.cancelled) cancelled" : ""))
            for failure in report.failures { print("  \(failure)") }
            for (name, path) in report.outputs.sorted(by: { $0.key < $1.key }) { print("  output \(name): \(path)") }
        }
    }
}

/// `shoal graph FILE`: the task graph in Graphviz DOT.
struct Graph: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a workflow file's task graph in Graphviz DOT (edges are data versions).")

    @Argument(help: "The workflow file.") var file: String

    func run() async throws {
        try await exitOnError {
            let workflow = try WorkflowFile.load(path: file)
            try workflow.validate(knownTasks: Set(ExampleTasks.registry.names))
            print(workflow.dot(), terminator: "")
        }
    }
}
