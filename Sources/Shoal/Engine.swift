import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Tunables of the local runtime. Every queue and batch is bounded.
public struct RuntimeSettings: Sendable, Hashable {
    /// Worker threads, one per slot (default: the number of cores).
    public var workers: Int
    /// Most tasks a worker takes from the ready queue per lock acquisition.
    public var takeBatchMax: Int
    /// Submissions buffered by the submitting thread before they are handed to the scheduler.
    public var submitBatchMax: Int
    /// Most live (pending, ready or running) tasks before `submit` waits for room.
    public var maxLiveTasks: Int
    /// While a worker is idle, buffered submissions are handed over once this many are buffered or
    /// `idleFlushMicros` passed since the last hand-over (whichever comes first).
    public var idleFlushMin: Int = 32
    public var idleFlushMicros: Int = 20
    /// How long an idle worker spins (yielding the core) looking for work before it sleeps.
    public var spinMicros: Int = 50
    /// A worker whose recent tasks took longer than this on average takes one task at a time, so
    /// no worker sits on a batch of long tasks while another idles (batches only pay off for
    /// tasks shorter than a lock hand-off is long).
    public var coarseTaskMicros: Int = 20

    public init(
        workers: Int = ProcessInfo.processInfo.activeProcessorCount, takeBatchMax: Int = 64,
        submitBatchMax: Int = 256, maxLiveTasks: Int = 4_000_000
    ) {
        precondition(workers > 0 && takeBatchMax > 0 && submitBatchMax > 0 && maxLiveTasks > 0,
            "runtime settings must be positive: \(workers) \(takeBatchMax) \(submitBatchMax) \(maxLiveTasks)")
        self.workers = workers
        self.takeBatchMax = takeBatchMax
        self.submitBatchMax = submitBatchMax
        self.maxLiveTasks = maxLiveTasks
    }
}

/// Counters of one run.
public struct RunStatistics: Sendable, Hashable {
    public var submitted = 0
    public var completed = 0
    public var failed = 0
    public var cancelled = 0
    public var retried = 0
    public var versionsReleased = 0
}

/// What every submission of one task shares: its name, the names of its data (for messages), and
/// its body, which takes the submission's arguments type-erased.
final class TaskInfo: Sendable {
    let name: String
    let labels: [String]
    let run: @Sendable (_ args: any Sendable, _ context: inout TaskContext) throws -> Void

    init(
        name: String, labels: [String] = [],
        run: @escaping @Sendable (_ args: any Sendable, _ context: inout TaskContext) throws -> Void
    ) {
        self.name = name
        self.labels = labels
        self.run = run
    }

    /// A task whose body is a closure given at submission (passed as its arguments).
    static func closure(name: String, labels: [String] = []) -> TaskInfo {
        TaskInfo(name: name, labels: labels) { args, context in
            try (args as! @Sendable (inout TaskContext) throws -> Void)(&context)
        }
    }
}

/// A task as the runtime holds it until it runs: its shared `TaskInfo` and its arguments. The
/// arguments sit inline in the existential when they fit in 3 words, so submitting a task
/// allocates nothing of its own; no closure is made per task.
///
/// The `TaskInfo` is held unretained: the engine keeps every info it was given alive for the
/// whole run (`Engine.submit` registers it). Every task of a definition shares one info, so
/// retaining it per task would bounce its reference count between the cores on every hand-off.
struct PendingTask: @unchecked Sendable {
    var info: Unmanaged<TaskInfo>
    var args: any Sendable

    init(info: TaskInfo, args: any Sendable) {
        self.info = .passUnretained(info)
        self.args = args
    }

    var name: String { info._withUnsafeGuaranteedRef { $0.name } }
    var labels: [String] { info._withUnsafeGuaranteedRef { $0.labels } }

    func run(_ context: inout TaskContext) throws {
        try info._withUnsafeGuaranteedRef { try $0.run(args, &context) }
    }
}

struct Submission: Sendable {
    var accesses: [(datum: DatumID, direction: Direction)]
    var policy: FailurePolicy
    var task: PendingTask
}

/// A task handed to a worker with everything it needs to run without the lock.
struct Runnable {
    var id: TaskID
    var task: PendingTask
    var context: TaskContext

    /// Runs the task on its context in place. (Calling `runnable[i].task.run(&runnable[i].context)`
    /// copies the whole element, which shares the context's inputs, so a value lent to the task
    /// could never be mutated in place; a mutating method touches the two fields separately.)
    mutating func run() throws {
        try task.run(&context)
    }
}

/// A task that ran, with what it produced, waiting to be recorded under the lock.
struct Finished {
    var id: TaskID
    var accesses: [ResolvedAccess]
    var inputs: [ValueBox?]
    var outputs: [Any?]
    var error: (any Error)?
}

/// Which threads to wake after the state changed.
struct Wakeups {
    var workers = 0
    var submitter = false
}

/// The local runtime: the `DataflowGraph` machine and the values behind one lock, worker threads
/// that take ready tasks in batches.
///
/// The per-task path never hops between actors or Swift tasks: the submitting thread buffers
/// submissions and hands them over in batches; each worker takes a batch of ready tasks under the
/// lock, runs them without it, and records the whole batch's results at its next acquisition.
/// Everything the lock guards lives in one `EngineState` value, so a lock hold is one exclusive
/// access and no state is copied.
final class Engine: @unchecked Sendable {
    let settings: RuntimeSettings
    private let lock = ThreadLock()
    private let workAvailable: ThreadLock.Condition
    private let roomAvailable: ThreadLock.Condition
    private var threads: [Thread] = []
    private let exited = DispatchSemaphore(value: 0)
    /// Guarded by `lock`.
    private var state: EngineState

    // The submitting side's buffer, behind its own lock: appending never waits for the engine
    // lock, and workers only ever try it (`flushFromWorker`).
    private let buffer = Mutex<SubmitBuffer>(SubmitBuffer())
    private let idleHint = Atomic<Int>(0)
    /// Workers asleep on `workAvailable`, and submissions in the buffer. A submission must never
    /// be stranded in the buffer while every worker sleeps: the submitter stores the buffer count
    /// then reads the sleepers; a worker stores the sleepers then reads the buffer count (both
    /// sequentially consistent), so at least one of them sees the other and hands the buffer over.
    private let sleepingHint = Atomic<Int>(0)
    private let bufferedHint = Atomic<Int>(0)
    /// Ready tasks as of the last lock release, for spinning workers.
    private let readyHint = Atomic<Int>(0)
    private let clock = ContinuousClock()

    struct SubmitBuffer {
        var items: [Submission] = []
        var lastFlush = ContinuousClock.Instant.now
        /// Every `TaskInfo` submitted, kept alive until the engine ends (pending tasks hold them
        /// unretained). Bounded by the number of distinct task definitions and workflow-file calls.
        var infos: [ObjectIdentifier: TaskInfo] = [:]
        var lastInfo: ObjectIdentifier?
    }

    init(settings: RuntimeSettings) {
        self.settings = settings
        state = EngineState(
            // A worker holds a whole batch as running, so the graph needs a slot for every task
            // of every worker's batch; the worker threads bound how many run at once.
            graph: DataflowGraph(
                settings: SchedulerSettings(
                    slots: settings.workers * settings.takeBatchMax, maxLiveTasks: settings.maxLiveTasks)),
            workers: settings.workers, takeBatchMax: settings.takeBatchMax)
        workAvailable = .init(lock)
        roomAvailable = .init(lock)
    }

    // MARK: Lifecycle

    func start() {
        for i in 0..<settings.workers {
            let t = Thread { [self] in
                workerLoop()
                exited.signal()
            }
            t.name = "shoal-worker-\(i)"
            t.stackSize = 8 << 20
            threads.append(t)
            t.start()
        }
    }

    /// Stops the workers after the tasks they hold; waits for them to exit.
    func shutdown() {
        lock.withLock {
            state.shuttingDown = true
            workAvailable.broadcast()
        }
        for _ in threads { exited.wait() }
        threads = []
    }

    // MARK: Submitting (any thread)

    /// Buffers a submission. `info` must be the submission's task info (kept alive from here on).
    ///
    /// Batches reach the graph in buffer order because a batch is taken and handed over under the
    /// buffer lock: the program's thread and an idle worker may both hand over, and a later batch
    /// overtaking an earlier one would reorder the program's calls (and so its dependences).
    func submit(_ submission: Submission, info: TaskInfo) {
        buffer.withLock { b in
            let id = ObjectIdentifier(info)
            if b.lastInfo != id {
                if b.infos[id] == nil { b.infos[id] = info }
                b.lastInfo = id
            }
            b.items.append(submission)
            let n = b.items.count
            bufferedHint.store(n, ordering: .sequentiallyConsistent)
            if n >= settings.submitBatchMax { return handOver(&b) }
            // A sleeping worker needs a wake-up anyway: hand over now. Spinning workers pull the
            // buffer themselves (`spinForWork`).
            if sleepingHint.load(ordering: .sequentiallyConsistent) > 0 { return handOver(&b) }
            // While a worker idles, hand over small batches: at once after a quiet spell, else every
            // `idleFlushMin` submissions or `idleFlushMicros` (the clock is read on every 8th only).
            if idleHint.load(ordering: .relaxed) > 0,
                n >= settings.idleFlushMin
                    || ((n == 1 || n & 7 == 0) && clock.now - b.lastFlush > .microseconds(settings.idleFlushMicros))
            {
                return handOver(&b)
            }
        }
    }

    /// Takes the buffered submissions and hands them to the scheduler. Called with the buffer
    /// lock held (see `submit`).
    private func handOver(_ b: inout SubmitBuffer) {
        hand(take(&b))
    }

    private func take(_ b: inout SubmitBuffer) -> [Submission] {
        defer {
            bufferedHint.store(0, ordering: .sequentiallyConsistent)
            b.items.removeAll(keepingCapacity: true)
            b.lastFlush = clock.now
        }
        return b.items
    }

    /// Hands every buffered submission to the scheduler.
    func flush() {
        buffer.withLock { handOver(&$0) }
    }

    /// `flush()` from a worker: never waits for the buffer lock. Its holder (the program's thread)
    /// may be waiting for room in the graph, which only workers make; and it hands the buffer over
    /// itself. Whether the buffer was free.
    @discardableResult
    private func flushFromWorker() -> Bool {
        buffer.withLockIfAvailable { handOver(&$0) } != nil
    }

    private func hand(_ batch: [Submission]) {
        guard !batch.isEmpty else { return }
        var resumes: [() -> Void] = []
        lock.lock()
        var next = 0
        while next < batch.count {
            next = state.submit(batch, from: next, resumes: &resumes)
            if next < batch.count {
                state.submitterWaiting = true
                // Wake workers for what was just submitted before sleeping: room is only made
                // by them, and they may all be asleep.
                state.settle(&resumes)
                wake()
                roomAvailable.wait()
            }
        }
        state.settle(&resumes)
        wake()
        lock.unlock()
        for r in resumes { r() }
    }

    func define(_ datum: DatumID, value: any Sendable) {
        flush()
        var resumes: [() -> Void] = []
        lock.withLock {
            state.define(datum, value: value)
            state.settle(&resumes)
            wake()
        }
        for r in resumes { r() }
    }

    /// The value of the newest version of `datum` once it is available.
    func value(of datum: DatumID) async throws -> Any {
        flush()
        let box: ValueBox? = try await withCheckedThrowingContinuation { c in
            var resumes: [() -> Void] = []
            lock.withLock {
                state.wait(for: datum, c)
                state.settle(&resumes)
                wake()
            }
            for r in resumes { r() }
        }
        guard let box, let value = box.value else { throw ShoalError.noValue(datum: datum) }
        return value
    }

    /// Waits until every submitted task has finished; throws the failure that aborted the run.
    func barrier() async throws {
        flush()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.withLock {
                if state.graph.liveTasks == 0 { c.resume() } else { state.barrierWaiters.append(c) }
            }
        }
        if let error = lock.withLock({ state.graph.abortCause.map { state.failureError($0) } }) { throw error }
    }

    var statistics: RunStatistics { lock.withLock { state.stats } }

    /// Failures that were ignored or cancelled successors (not aborting the run), in order.
    var recordedFailures: [FailureRecord] {
        lock.withLock { state.failureOutcomes.map { state.graph.failure($0) } }
    }

    // MARK: Workers

    /// Wakes the threads the last state changes asked for. Called with the lock held.
    private func wake() {
        let w = state.takeWakeups()
        readyHint.store(state.graph.readyCount, ordering: .relaxed)
        if w.workers == 1 { workAvailable.signal() } else if w.workers > 1 { workAvailable.broadcast() }
        if w.submitter { roomAvailable.broadcast() }
    }

    private func workerLoop() {
        var runnable: [Runnable] = []
        var finished: [Finished] = []
        var resumes: [() -> Void] = []
        /// Moving average of this worker's recent task durations, in nanoseconds.
        var averageTaskNanos = 0.0
        let coarse = Double(settings.coarseTaskMicros) * 1000
        lock.lock()
        while true {
            let limit = averageTaskNanos > coarse ? 1 : settings.takeBatchMax
            state.step(recording: &finished, taking: &runnable, limit: limit, resumes: &resumes)
            wake()
            if !runnable.isEmpty || !resumes.isEmpty {
                lock.unlock()
                for r in resumes { r() }
                resumes.removeAll(keepingCapacity: true)
                let started = clock.now
                for i in runnable.indices {
                    do {
                        try runnable[i].run()
                        finished.append(
                            Finished(
                                id: runnable[i].id, accesses: runnable[i].context.accesses,
                                inputs: runnable[i].context.inputs, outputs: runnable[i].context.outputs, error: nil))
                    } catch {
                        finished.append(Finished(id: runnable[i].id, accesses: [], inputs: [], outputs: [], error: error))
                    }
                }
                if !runnable.isEmpty {
                    let nanos = Double((clock.now - started).components.attoseconds) * 1e-9
                        + Double((clock.now - started).components.seconds) * 1e9
                    averageTaskNanos = 0.75 * averageTaskNanos + 0.25 * nanos / Double(runnable.count)
                }
                runnable.removeAll(keepingCapacity: true)
                lock.lock()
                continue
            }
            if state.shuttingDown { break }
            state.idleWorkers += 1
            idleHint.store(state.idleWorkers, ordering: .relaxed)
            // Ready tasks this worker could not take (every slot handed out): sleep until a
            // completion frees a slot and wakes it. Nothing ready: spin a little, then sleep —
            // unless work arrived between the end of the spin and re-taking the lock.
            let blocked = state.graph.readyCount > 0
            if blocked || (!spinForWork() && state.graph.readyCount == 0), !state.shuttingDown {
                sleepingHint.add(1, ordering: .sequentiallyConsistent)
                if bufferedHint.load(ordering: .sequentiallyConsistent) > 0 {
                    // Submissions nobody may hand over (the submitter saw no sleeper): do it. While
                    // the buffer lock is busy nothing can be appended, and a holder that hands over
                    // empties the buffer, so this loop ends.
                    sleepingHint.subtract(1, ordering: .sequentiallyConsistent)
                    lock.unlock()
                    while bufferedHint.load(ordering: .sequentiallyConsistent) > 0, !flushFromWorker() {
                        sched_yield()
                    }
                    lock.lock()
                } else {
                    workAvailable.wait()
                    sleepingHint.subtract(1, ordering: .sequentiallyConsistent)
                }
            }
            state.idleWorkers -= 1
            idleHint.store(state.idleWorkers, ordering: .relaxed)
        }
        lock.unlock()
    }

    /// Spins (yielding the core to other threads) for up to `spinMicros` until ready work appears,
    /// handing over buffered submissions if it sees any. Called and returns with the lock held;
    /// whether work appeared. A thread wake-up costs about
    /// 20 µs here, more than a fine-grained task, so a short spin keeps workers hot between steps.
    private func spinForWork() -> Bool {
        guard settings.spinMicros > 0 else { return false }
        lock.unlock()
        let deadline = clock.now + .microseconds(settings.spinMicros)
        var found = false
        var spins = 0
        var lastBuffered = bufferedHint.load(ordering: .relaxed)
        while true {
            if readyHint.load(ordering: .relaxed) > 0 {
                found = true
                break
            }
            spins += 1
            // Mostly plain loads (no syscall); now and then check the clock, rescue stranded
            // submissions, and yield the core, so a spinning worker never starves the submitter.
            if spins & 255 == 0 {
                // Buffered submissions that did not change since the last look: the program paused
                // (went off to work on its own) without handing them over. While it is still
                // submitting, it hands over by itself and a worker stays out of its way.
                let buffered = bufferedHint.load(ordering: .relaxed)
                if buffered > 0, buffered == lastBuffered, flushFromWorker() {
                    found = true
                    break
                }
                lastBuffered = buffered
                if clock.now > deadline { break }
                sched_yield()
            }
        }
        lock.lock()
        return found && state.graph.readyCount > 0
    }
}

/// Everything the engine's lock guards: the graph machine, the task bodies, the values, and who
/// waits for what. Mutated only with the lock held.
struct EngineState {
    var graph: DataflowGraph
    let workers: Int
    let takeBatchMax: Int
    var tasks: [PendingTask?] = []
    var values: [ValueBox?] = []
    var waiters: [UInt32: [CheckedContinuation<ValueBox?, any Error>]] = [:]
    var barrierWaiters: [CheckedContinuation<Void, Never>] = []
    var directives: [Directive] = []
    var taken: [TaskID] = []
    var idleWorkers = 0
    var submitterWaiting = false
    var shuttingDown = false
    var stats = RunStatistics()
    var failureOutcomes: [FailureID] = []

    init(graph: DataflowGraph, workers: Int, takeBatchMax: Int) {
        self.graph = graph
        self.workers = workers
        self.takeBatchMax = takeBatchMax
    }

    // MARK: Steps (one per lock hold)

    /// Submits `batch[from...]` until the graph is full; returns the index of the first one not
    /// submitted.
    mutating func submit(_ batch: [Submission], from: Int, resumes: inout [() -> Void]) -> Int {
        var i = from
        while i < batch.count, graph.hasRoomForSubmission {
            let s = batch[i]
            let t = graph.submit(s.accesses, policy: s.policy, into: &directives)
            stats.submitted += 1
            if graph.isPending(t) {
                storeTask(s.task, at: t)
            } else {
                // Cancelled at submission: its slot is free again and the next submission of this
                // batch may reuse it, so carry out its `.finished` directive now.
                settle(&resumes)
            }
            i += 1
        }
        return i
    }

    mutating func define(_ datum: DatumID, value: any Sendable) {
        let v = graph.define(datum, into: &directives)
        setValue(ValueBox(value), at: v)
    }

    /// Resolves `c` with the newest version of `datum` now, or registers it until that version is
    /// available or failed.
    mutating func wait(for datum: DatumID, _ c: CheckedContinuation<ValueBox?, any Error>) {
        guard let v = graph.pinCurrent(datum, into: &directives) else {
            c.resume(throwing: ShoalError.undefined(datum: datum))
            return
        }
        switch graph.status(of: v) {
        case .available:
            c.resume(returning: box(v))
            graph.unpin(v, into: &directives)
        case .failed(let f):
            c.resume(throwing: failureError(f))
            graph.unpin(v, into: &directives)
        case .pending:
            waiters[v.raw, default: []].append(c)
        case .released:
            preconditionFailure("pinned version \(v) of \(datum) is released")
        }
    }

    /// A worker's step: records what it finished, settles the directives, takes its share of the
    /// ready queue.
    mutating func step(
        recording finished: inout [Finished], taking runnable: inout [Runnable], limit: Int,
        resumes: inout [() -> Void]
    ) {
        for f in finished { record(f) }
        finished.removeAll(keepingCapacity: true)
        // Carry out the directives before preparing tasks: a `.passThrough` gives a version the
        // value the tasks made ready by the same failure are about to read.
        settle(&resumes)
        taken.removeAll(keepingCapacity: true)
        let share = max(1, (graph.readyCount + workers - 1) / workers)
        graph.take(max: min(limit, share), into: &taken)
        for t in taken { runnable.append(prepare(t)) }
        if graph.readyCount > 0, idleWorkers > 0 { wakeups.workers = max(wakeups.workers, 1) }
    }

    /// Builds a running task's context: the boxes of the versions it reads.
    ///
    /// A value that no one else can read any more (an `inout` whose old version has this task as
    /// its sole reader, or a commutative group's value, which its lock holder owns) is detached
    /// from the version table and lent to the task, so `update` mutates it in place instead of
    /// copying. Only on a last attempt whose failure is not ignored: a retry or an ignored
    /// failure needs the old value intact.
    mutating func prepare(_ t: TaskID) -> Runnable {
        guard let task = tasks[Int(t.raw)] else { preconditionFailure("no body for running task \(t)") }
        let accesses = graph.accesses(of: t)
        var inputs: [ValueBox?] = []
        if !accesses.isEmpty {
            let policy = graph.policy(of: t)
            let mayConsume = graph.attempts(of: t) > Int(policy.retries) && policy.action != .ignore
            inputs.reserveCapacity(accesses.count)
            for a in accesses {
                guard let r = a.read else {
                    inputs.append(nil)
                    continue
                }
                switch a.direction {
                case .commutative:
                    let w = a.written!
                    if let cell = box(w) {
                        // A later member of the group reads the group's value.
                        if mayConsume { clearValue(at: w) }
                        inputs.append(cell)
                    } else {
                        inputs.append(box(r))
                    }
                case .concurrent:
                    // Members share one instance: the group's value is the base value.
                    let w = a.written!
                    if box(w) == nil { setValue(box(r), at: w) }
                    inputs.append(box(w))
                case .inout where mayConsume && graph.hasSoleReader(r):
                    inputs.append(box(r))
                    clearValue(at: r)
                default:
                    inputs.append(box(r))
                }
            }
        }
        let context = TaskContext(
            taskName: task.name, attempt: graph.attempts(of: t), accesses: accesses, inputs: inputs,
            labels: task.labels)
        return Runnable(id: t, task: task, context: context)
    }

    /// Applies a finished task's result to the graph.
    mutating func record(_ f: Finished) {
        let t = f.id
        if let error = f.error {
            graph.fail(t, label: tasks[Int(t.raw)]?.name ?? "\(t)", message: "\(error)", into: &directives)
            return
        }
        let accesses = f.accesses
        if let i = accesses.indices.first(where: { accesses[$0].direction == .out && f.outputs[$0] == nil }) {
            let task = tasks[Int(t.raw)]
            let what = i < (task?.labels.count ?? 0) ? "'\(task!.labels[i])'" : "parameter \(i)"
            graph.fail(t, label: task?.name ?? "\(t)", message: "it did not write its out datum \(what)", into: &directives)
            return
        }
        for (i, a) in accesses.enumerated() {
            guard let w = a.written else { continue }
            if let out = f.outputs[i] {
                setValue(ValueBox(out), at: w)
            } else if a.direction != .concurrent, let r = a.read {
                // Left unchanged: the new version holds the value the task read.
                setValue(f.inputs[i] ?? box(r), at: w)
            }
        }
        graph.complete(t, into: &directives)
    }

    /// Which threads to wake, accumulated until the shell takes them.
    var wakeups = Wakeups()

    mutating func takeWakeups() -> Wakeups {
        defer { wakeups = Wakeups() }
        return wakeups
    }

    /// Carries out the graph's directives. Continuations to resume are appended to `resumes`, to
    /// run after the lock is released; threads to wake accumulate in `wakeups`.
    mutating func settle(_ resumes: inout [() -> Void]) {
        var i = 0
        var newlyReady = 0
        while i < directives.count {
            let d = directives[i]
            i += 1
            switch d {
            case .ready:
                newlyReady += 1
            case .versionAvailable(let v):
                if let ws = waiters.removeValue(forKey: v.raw) {
                    let cell = box(v)
                    for w in ws {
                        resumes.append { w.resume(returning: cell) }
                        graph.unpin(v, into: &directives)
                    }
                }
            case .versionFailed(let v, let f):
                if let ws = waiters.removeValue(forKey: v.raw) {
                    let error = failureError(f)
                    for w in ws {
                        resumes.append { w.resume(throwing: error) }
                        graph.unpin(v, into: &directives)
                    }
                }
            case .releaseVersion(let v):
                clearValue(at: v)
                stats.versionsReleased += 1
            case .passThrough(let from, let to):
                if box(to) == nil { setValue(box(from), at: to) }
            case .retrying:
                stats.retried += 1
            case .finished(let t, let outcome):
                // A task cancelled at submission was never stored: its slot may be past the end.
                if Int(t.raw) < tasks.count { tasks[Int(t.raw)] = nil }
                switch outcome {
                case .completed: stats.completed += 1
                case .failed(let f):
                    stats.failed += 1
                    if graph.abortCause != f { failureOutcomes.append(f) }
                case .failedIgnored(let f):
                    stats.failed += 1
                    failureOutcomes.append(f)
                case .cancelled: stats.cancelled += 1
                }
            }
        }
        directives.removeAll(keepingCapacity: true)
        if newlyReady > 0, idleWorkers > 0 {
            wakeups.workers = max(wakeups.workers, newlyReady == 1 ? 1 : idleWorkers)
        }
        if submitterWaiting, graph.hasRoomForSubmission {
            submitterWaiting = false
            wakeups.submitter = true
        }
        if graph.liveTasks == 0, !barrierWaiters.isEmpty {
            let ws = barrierWaiters
            barrierWaiters = []
            for c in ws { resumes.append { c.resume() } }
        }
    }

    mutating func storeTask(_ task: PendingTask, at t: TaskID) {
        let i = Int(t.raw)
        if i >= tasks.count { tasks.append(contentsOf: repeatElement(nil, count: i + 1 - tasks.count)) }
        tasks[i] = task
    }

    /// The box of version `v`, or nil if it has none yet (`values` grows only when a value is set).
    func box(_ v: VersionID) -> ValueBox? {
        let i = Int(v.raw)
        return i < values.count ? values[i] : nil
    }

    mutating func clearValue(at v: VersionID) {
        let i = Int(v.raw)
        if i < values.count { values[i] = nil }
    }

    mutating func setValue(_ box: ValueBox?, at v: VersionID) {
        let i = Int(v.raw)
        if i >= values.count { values.append(contentsOf: repeatElement(nil, count: i + 1 - values.count)) }
        values[i] = box
    }

    func failureError(_ f: FailureID) -> ShoalError {
        let r = graph.failure(f)
        return .taskFailed(task: r.task, message: r.message, attempts: r.attempts)
    }
}

/// Errors of the runtime.
public enum ShoalError: Error, CustomStringConvertible, Equatable {
    /// A task failed after `attempts` attempts; dependants fail with this cause.
    case taskFailed(task: String, message: String, attempts: Int)
    /// Waited on a datum that nothing defined.
    case undefined(datum: DatumID)
    /// The datum's version has no value: its writer failed and the failure was ignored.
    case noValue(datum: DatumID)
    /// A value has another type than the handle says.
    case typeMismatch(name: String, expected: String, actual: String)
    /// A persistent object is not in the store.
    case notFound(name: String)
    /// The run has no store (`RunOptions.store`), so nothing can be persisted or opened.
    case noStore(operation: String)
    /// What a program whose calls are being recorded (`Shoal.record`) cannot do.
    case recording(String)

    public var description: String {
        switch self {
        case .taskFailed(let task, let message, let attempts):
            "task '\(task)' failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(message)"
        case .undefined(let datum): "datum \(datum) was never defined"
        case .noValue(let datum): "datum \(datum) has no value: its writer failed and the failure was ignored"
        case .typeMismatch(let name, let expected, let actual): "'\(name)' holds \(actual), not \(expected)"
        case .notFound(let name): "no persistent object named '\(name)'"
        case .noStore(let operation): "cannot \(operation): the run has no store (give RunOptions a data directory)"
        case .recording(let message): message
        }
    }
}
