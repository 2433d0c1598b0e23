import ArgumentParser
import Foundation
import Shoal
import ShoalExamples
import ShoalStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `shoal run FILE`: runs a workflow file on this machine.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workflow file (YAML) on this machine, using every core.",
        discussion: """
            Exit codes: 0 success, 1 a task failed, 2 bad input (a malformed file, unknown tasks or \
            data, a bad option or path), 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP (running \
            commands and everything they started are killed, scratch folders removed).
            """)

    /// Most worker threads `--workers` accepts: each is an OS thread that may wait on a command.
    static let maxWorkers = 1_024
    /// Longest `--timeout`: 30 days.
    static let maxTimeoutSeconds = 30.0 * 86_400

    @Argument(help: "The workflow file.") var file: String
    @Option(help: "Write the workflow's outputs here as DIR/<name>.") var outputDir: String?
    @Option(help: "Record the run (and keep persistent objects) in the LMDB store in this folder.") var dataDir: String?
    @Option(help: "Where this run's folder of versions and scratch folders goes, kept after the run (default: a temporary folder, removed after the run).")
    var workDir: String?
    @Option(help: "Kill a command still running after this many seconds (more than 0, at most 30 days).")
    var timeout: Double?
    @Option(help: "Worker threads, 1 to \(Run.maxWorkers) (default: cores).")
    var workers = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard workers >= 1 && workers <= Self.maxWorkers else {
            throw refuse("--workers must be 1 to \(Self.maxWorkers), got \(workers)")
        }
        if let timeout, !(timeout.isFinite && timeout > 0 && timeout <= Self.maxTimeoutSeconds) {
            throw refuse("--timeout must be a number of seconds more than 0 and at most \(Int(Self.maxTimeoutSeconds)) (30 days), got \(timeout)")
        }
    }

    func run() async throws {
        try await exitOnError {
            let temporary = workDir == nil
            let work = URL(fileURLWithPath: workDir ?? NSTemporaryDirectory() + "shoal-run-\(UUID().uuidString)")
            let scratch = Mutex<URL?>(nil)
            // From here on a signal kills the commands and removes what this run made.
            let interrupts = Interrupts { signal in
                CommandProcesses.shared.terminateAll()
                if let folder = temporary ? work : scratch.withLock({ $0 }) { WorkflowRunner.removeFolder(folder) }
                printError("\ninterrupted by \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "SIGHUP"): its commands were killed")
            }
            // The defers run in the opposite order: first claim the end (a signal after this does
            // nothing, so two exits never race), then kill what is left and remove the temporary
            // work folder, and only then give the signals their default actions back.
            defer { interrupts.cancel() }
            defer { if temporary { WorkflowRunner.removeFolder(work) } }
            // Every command's descendants come back to this process when their parents die, so
            // none outlives its task or the run.
            CommandProcesses.shared.adoptOrphans()
            defer { CommandProcesses.shared.killLeftovers() }
            defer { Interrupts.settle() }
            try raiseOpenFileLimit(workers: workers)

            let workflow = try WorkflowFile.load(path: file)
            var options = RunOptions(runtime: RuntimeSettings(workers: workers))
            let runner = WorkflowRunner(
                file: workflow, registry: ExampleTasks.registry, options: options, workDirectory: work,
                outputDirectory: outputDir.map { URL(fileURLWithPath: $0) }, commandTimeoutSeconds: timeout)
            // Everything is checked before any task runs: the file, then every folder.
            try runner.validate()
            let dataRole = "data folder (--data-dir)"
            if let dataDir { try WorkflowRunner.checkFolder(dataDir, role: dataRole) }
            let prepared = try runner.prepare()
            scratch.withLock { $0 = prepared.scratch }
            if let dataDir {
                try WorkflowRunner.makeFolder(dataDir, role: dataRole)
                options.store = try LMDBShard(directory: dataDir)
            }
            var running = runner
            running.options = options

            let bar = ProgressLine(workflow.name)
            let report: WorkflowRunner.Report
            do {
                report = try await running.run(prepared) { stats, total in
                    bar.update(done: stats.completed + stats.failed + stats.cancelled, total: total, failed: stats.failed)
                }
            } catch let failure as WorkflowRunFailure {
                Interrupts.holdIfTriggered()
                bar.finish()
                printReport(failure.report)
                throw failure.cause
            } catch {
                Interrupts.holdIfTriggered()
                throw error
            }
            Interrupts.holdIfTriggered()
            bar.finish()
            printReport(report)
        }
    }

    /// Each running command holds three descriptors (its two pipes and a pidfd) and five while it
    /// starts: raise this process's soft limit on open files to what `--workers` needs (no
    /// higher: commands inherit it, and a program using `select()` breaks on descriptors over
    /// 1,024), and refuse a `--workers` that would still run out.
    private func raiseOpenFileLimit(workers: Int) throws {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let needed = rlim_t(workers * 6 + 256)
        if limit.rlim_cur < needed {
            var raised = limit
            raised.rlim_cur = min(needed, limit.rlim_max)
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        guard limit.rlim_cur >= needed else {
            throw refuse(
                "--workers \(workers) needs about \(needed) open files, and this process may open \(limit.rlim_cur) (ulimit -n): use fewer workers or raise the limit")
        }
    }

    private func printReport(_ report: WorkflowRunner.Report) {
        print("workflow '\(report.workflow)': \(report.completed) of \(report.tasks) tasks completed in \(String(format: "%.3f", report.seconds)) s"
            + (report.retried > 0 ? ", \(report.retried) retried" : "")
            + (report.failed > 0 ? ", \(report.failed) failed" : "")
            + (report.cancelled > 0 ? ", \(report.cancelled) cancelled" : ""))
        for failure in report.failures { print("  \(failure)") }
        for (name, path) in report.outputs.sorted(by: { $0.key < $1.key }) { print("  output \(name): \(path)") }
        for (name, why) in report.outputsNotWritten.sorted(by: { $0.key < $1.key }) {
            print("  output \(name): not written: \(why.split(separator: "\n").first ?? "")")
        }
    }
}

/// `shoal graph FILE`: the task graph in Graphviz DOT.
struct Graph: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a workflow file's task graph in Graphviz DOT (edges are data versions).")

    @Argument(help: "The workflow file.") var file: String

    func run() throws {
        try exitOnError {
            let workflow = try WorkflowFile.load(path: file)
            try workflow.validate(knownTasks: Set(ExampleTasks.registry.names))
            print(workflow.dot(), terminator: "")
        }
    }
}
