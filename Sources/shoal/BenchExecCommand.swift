import ArgumentParser
import Foundation
import Shoal
import ShoalExamples

/// `shoal bench exec`: empty shell commands through a workflow file, against `xargs -P` running
/// the same number of `sh -c true` on the same number of processes, measured in the same run.
struct BenchExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Exec tasks per second through a workflow file, beside xargs -P running sh -c true.",
        discussion: """
            Runs N independent tasks `exec: "true"` the way `shoal run` does (scratch folder, \
            clean spawn, pipes, clean-up of what a command leaves), and `seq N | xargs -P W -I{} \
            sh -c true` as the reference: the operating system's cost of the same shells. With \
            --input-bytes B every task also reads one input of B bytes, which it gets as a private \
            copy; the extra time per task gives the copy's throughput.
            """)

    @Option(help: "Commands per run.") var tasks = 2_000
    @Option(help: "Runs of each (the median is printed).") var runs = 3
    @Option(help: "Worker threads, and xargs -P (default: cores).")
    var workers = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Also run tasks that each read one input of this many bytes (0: skip).") var inputBytes = 0

    func validate() throws {
        guard tasks >= 1 && tasks <= 1_000_000 else { throw refuse("--tasks must be 1 to 1000000, got \(tasks)") }
        guard runs >= 1 && runs <= 100 else { throw refuse("--runs must be 1 to 100, got \(runs)") }
        guard workers >= 1 && workers <= Run.maxWorkers else {
            throw refuse("--workers must be 1 to \(Run.maxWorkers), got \(workers)")
        }
        guard inputBytes >= 0 && inputBytes <= 1 << 30 else {
            throw refuse("--input-bytes must be 0 to \(1 << 30), got \(inputBytes)")
        }
    }

    func run() async throws {
        try await exitOnError {
            CommandProcesses.shared.adoptOrphans()
            let dir = URL(fileURLWithPath: NSTemporaryDirectory() + "shoal-bench-exec-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }

            var xargs: [Double] = [], shoal: [Double] = [], reading: [Double] = []
            for i in 1...runs {
                let reference = try referenceSeconds(in: dir)
                xargs.append(reference)
                let own = try await workflowSeconds(in: dir, inputBytes: 0)
                shoal.append(own)
                var line = "run \(i): xargs -P \(workers) \(format(Double(tasks) / reference, 0)) shells/s, "
                    + "shoal \(format(Double(tasks) / own, 0)) commands/s"
                if inputBytes > 0 {
                    let withInput = try await workflowSeconds(in: dir, inputBytes: inputBytes)
                    reading.append(withInput)
                    line += ", with a \(inputBytes)-byte input \(format(Double(tasks) / withInput, 0)) commands/s"
                }
                print(line)
            }
            let x = median(xargs), s = median(shoal)
            print("exec tasks: \(format(Double(tasks) / s, 0)) commands/s (median of \(runs), \(tasks) commands, \(workers) workers); "
                + "reference xargs -P \(workers) sh -c true: \(format(Double(tasks) / x, 0)) shells/s; ratio \(format(x / s, 2))")
            if inputBytes > 0 {
                // Extra wall time per task; the workers copy side by side, so each one spends
                // `workers` times that on a copy.
                let extra = (median(reading) - s) / Double(tasks)
                let rate =
                    extra > 0
                    ? "\(format(Double(inputBytes) / extra / 1e9, 2)) GB/s in all, "
                        + "\(format(Double(inputBytes) / (extra * Double(workers)) / 1e9, 2)) GB/s per worker"
                    : "too fast to tell"
                print("input copies: \(format(extra * 1e6, 1)) µs more wall time per task for \(inputBytes) bytes (\(rate))")
            }
        }
    }

    /// `seq N | xargs -P W -I{} sh -c true`, started as a clean child like any command.
    private func referenceSeconds(in dir: URL) throws -> Double {
        let command = try CommandTemplate(parsing: "seq \(tasks) | xargs -P \(workers) -I{} sh -c true")
        let scratch = dir.appendingPathComponent("xargs-\(UUID().uuidString)")
        let result = try ExecRunner().run(.init(taskName: "xargs", command: command, scratch: scratch))
        return result.durationSeconds
    }

    /// A workflow of `tasks` independent commands, run as `shoal run` runs it; wall time.
    private func workflowSeconds(in dir: URL, inputBytes: Int) async throws -> Double {
        var yaml = "name: bench-exec\n"
        let file = dir.appendingPathComponent("bench-\(inputBytes).yaml")
        if inputBytes > 0 {
            let input = dir.appendingPathComponent("input.bin")
            if !FileManager.default.fileExists(atPath: input.path) {
                try Data(count: inputBytes).write(to: input)
            }
            yaml += "data:\n  d: { file: input.bin }\n"
        }
        yaml += "tasks:\n  - name: t{i}\n    foreach: { i: \"0..<\(tasks)\" }\n"
        yaml += inputBytes > 0 ? "    exec: \"true {in:d}\"\n" : "    exec: \"true\"\n"
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        let workflow = try WorkflowFile.load(path: file.path)
        let work = dir.appendingPathComponent("work")
        defer { WorkflowRunner.removeFolder(work) }  // its versions hold a copy of the input
        let runner = WorkflowRunner(
            file: workflow, registry: ExampleTasks.registry, options: RunOptions(runtime: RuntimeSettings(workers: workers)),
            workDirectory: work)
        let report = try await runner.run()
        guard report.completed == tasks else {
            throw RunSetupError("bench exec: \(report.completed) of \(tasks) commands completed")
        }
        return report.seconds
    }

    private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
