import Foundation
import ShoalCore
import ShoalShell
import Synchronization

/// The threads task bodies run on: one per slot, each with a runner of its own (a runner keeps a
/// scratch folder and is not shared), so no body ever runs on Swift's cooperative pool. Jobs come
/// in from the peer and results go back in batches: the first result of a batch wakes the peer
/// once (`onResults`), and it takes every result that landed meanwhile.
final class WorkerPool: Sendable {
    struct Done: Sendable {
        let job: TaskJob
        let outputs: Result<[[UInt8]], TaskFailure>
    }

    struct QueuedJob: Sendable {
        let job: TaskJob
        let workflowName: String
    }

    private struct State {
        /// Jobs not yet taken (a taken job leaves at once: its input bytes go with it).
        var queue = RingBuffer<QueuedJob>()
        var results: [Done] = []
        var stopping = false
    }

    private let state = Mutex(State())
    private let work = DispatchSemaphore(value: 0)
    private let onResults: @Sendable () -> Void
    private let threads: Int

    /// Starts `runners.count` threads. `onResults` is called (from a worker) when results wait and
    /// none did before.
    init(runners: [any TaskBodyRunner & Sendable], onResults: @escaping @Sendable () -> Void) {
        self.onResults = onResults
        threads = runners.count
        for (k, runner) in runners.enumerated() {
            let thread = Thread { [self] in loop(runner) }
            thread.name = "shoal-task-\(k)"
            thread.start()
        }
    }

    /// Queues `job` (the machine bounds how many run at once by its slots).
    func submit(_ job: TaskJob, workflowName: String) {
        state.withLock { $0.queue.append(QueuedJob(job: job, workflowName: workflowName)) }
        work.signal()
    }

    /// The results that landed since the last call.
    func takeResults() -> [Done] {
        state.withLock { s in
            defer { s.results.removeAll(keepingCapacity: true) }
            return s.results
        }
    }

    func stop() {
        state.withLock { $0.stopping = true }
        for _ in 0..<threads { work.signal() }
    }

    private func loop(_ runner: any TaskBodyRunner) {
        while true {
            work.wait()
            let next: QueuedJob? = state.withLock { s in s.stopping ? nil : s.queue.popFirst() }
            guard let job = next?.job, let name = next?.workflowName else {
                if state.withLock({ $0.stopping }) { return }
                continue
            }
            let outputs: Result<[[UInt8]], TaskFailure>
            switch job.inputBytes {
            case .success(let inputs)?:
                let call = job.call!
                outputs = runner.run(
                    call.body, workflow: name, label: call.label, accesses: call.accesses, inputs: inputs, attempt: job.attempt)
            case .failure(let failure)?:
                outputs = .failure(failure)
            case nil:
                outputs = .failure(TaskFailure(message: "task \(job.task.task) has a modelled body, which only a scenario runs"))
            }
            let first = state.withLock { s in
                s.results.append(Done(job: job, outputs: outputs))
                return s.results.count == 1
            }
            if first { onResults() }
        }
    }
}
