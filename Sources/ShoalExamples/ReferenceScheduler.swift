import Foundation
import Synchronization
import Shoal

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The yardstick for `shoal bench trivial` and `shoal bench stencil`: a bare scheduler of Task
/// Bench's patterns, run in the same process and the same invocation as the engine, so the two
/// figures share the machine's speed and noise and their ratio can be compared across machines
/// (the absolute figures differ by up to 3× from one machine to the next).
///
/// What it has, and nothing more:
/// - one shared ready queue, a ring of fixed capacity behind one pthread mutex (adaptive on Linux,
///   as the engine's lock is);
/// - worker threads made as the engine makes its own (Foundation `Thread`, 8 MiB stacks), which
///   take up to `takeBatchMax` tasks per lock hold (their fair share of the queue), run them
///   without the lock, and record them at their next hold; an idle worker spins `spinMicros`
///   before it sleeps on a condition variable. These are the engine's defaults and policies, so
///   the ratio measures what the engine does per task, not a different batching or idling policy;
/// - for a pattern with dependences, a counter per task of the predecessors it still waits for;
///   a task becomes ready when its last predecessor is recorded;
/// - a task body called through a `@convention(c)` pointer with `(context, step, point)`.
///
/// What it leaves out, compared with the engine (read the ratio as the price of all of this):
/// - dependence analysis: predecessors come from the pattern's arithmetic on (step, point), not
///   from the data each task names;
/// - renaming and versions: no version table, no value boxes, no collection of old versions; the
///   body keeps its own values (`TaskBench.runReference` uses two rows of `Double`s);
/// - task records: a task is its (step, point); no arguments, no `TaskContext`, no type erasure;
/// - the failure policy: a body cannot fail, so nothing is retried, ignored, cancelled or passed
///   through;
/// - futures and waiters: the caller waits for the last task, not for named values;
/// - the submit buffer and the bound on live tasks: tasks without predecessors are pushed by the
///   calling thread straight into the queue (up to `submitBatchMax` per lock hold; it waits while
///   the ring is full).
public final class ReferenceScheduler: @unchecked Sendable {
    /// A task body: `context` is the caller's, `step` and `point` name the task.
    public typealias Body = @convention(c) (_ context: UnsafeMutableRawPointer?, _ step: Int, _ point: Int) -> Void

    let pattern: TaskBench.Pattern
    let width: Int
    let steps: Int
    let workers: Int
    let takeBatchMax: Int
    let submitBatchMax: Int
    let spinMicros: Int
    let body: Body
    let context: UnsafeMutableRawPointer?

    /// The engine's lock (`ThreadLock`, adaptive on Linux).
    private let mutex = ThreadLock()
    /// Workers sleep on `work`, the calling thread on `room` (ring full) and `allDone`.
    private let work: ThreadLock.Condition
    private let room: ThreadLock.Condition
    private let allDone: ThreadLock.Condition
    private let exited = DispatchSemaphore(value: 0)
    /// Queued tasks as of the last change, for spinning workers (they check again under the lock).
    private let queuedHint = Atomic<Int>(0)

    // Guarded by `mutex`.
    /// The ready queue: task ids `step * width + point`, `count` of them from `head`.
    private var ring: [Int]
    private var head = 0
    private var count = 0
    /// Predecessors each task still waits for, two steps at a time: the slot of (t, x) is reused
    /// by (t + 2, x). Safe because the patterns' reads are symmetric (y reads x if and only if x
    /// reads y): every predecessor of (t + 2, x) reads (t, x), so it is recorded after (t, x) ran,
    /// long after (t, x) became ready and left the slot.
    private var waitingFor: [Int32]
    private var completed = 0
    private var sleepers = 0
    private var callerWaitsForRoom = false
    private var done = false

    /// A scheduler for `width × steps` tasks of `pattern` on `workers` threads. The batch sizes
    /// and the spin time default to the engine's (`RuntimeSettings`); `TaskBench.runReference`
    /// passes the run's own, so both schedulers share them.
    public init(
        pattern: TaskBench.Pattern, width: Int, steps: Int, workers: Int, takeBatchMax: Int = 64,
        submitBatchMax: Int = 256, spinMicros: Int = 50, body: Body, context: UnsafeMutableRawPointer?
    ) {
        precondition(width > 0 && steps > 0 && workers > 0 && takeBatchMax > 0 && submitBatchMax > 0,
            "bad reference shape: \(width)x\(steps), \(workers) workers, batches \(takeBatchMax)/\(submitBatchMax)")
        self.pattern = pattern
        self.width = width
        self.steps = steps
        self.workers = workers
        self.takeBatchMax = takeBatchMax
        self.submitBatchMax = submitBatchMax
        self.spinMicros = spinMicros
        self.body = body
        self.context = context
        // With dependences, at most one task per point is ready at a time (the next one at x
        // waits for this one), so `width` slots hold every ready task and a worker never waits
        // for room. Without, only the calling thread pushes and it may wait: any bound will do.
        let hasDependences = pattern.inputs(of: 0, width: width) != nil
        ring = [Int](repeating: 0, count: hasDependences ? width : min(width * steps, 1 << 16))
        waitingFor = []
        if hasDependences {
            for _ in 0..<2 {
                for x in 0..<width { waitingFor.append(Int32(pattern.inputs(of: x, width: width)!.count)) }
            }
        }
        work = ThreadLock.Condition(mutex)
        room = ThreadLock.Condition(mutex)
        allDone = ThreadLock.Condition(mutex)
    }

    /// Runs every task once, each after its predecessors; returns the seconds from the first push
    /// to the moment the calling thread learns the last task was recorded (thread start-up
    /// excluded, as `TaskBench.run` excludes the engine's). A scheduler runs once.
    public func run() -> Double {
        precondition(completed == 0 && !done, "a ReferenceScheduler runs once")
        for i in 0..<workers {
            let t = Thread { [self] in
                workerLoop()
                exited.signal()
            }
            t.name = "reference-worker-\(i)"
            t.stackSize = 8 << 20
            t.start()
        }
        let start = ContinuousClock.now
        // Tasks without predecessors: the first step, or every task of a pattern without reads.
        let sources = pattern.inputs(of: 0, width: width) == nil ? width * steps : width
        var next = 0
        mutex.lock()
        while next < sources {
            while count == ring.count {
                callerWaitsForRoom = true
                room.wait()
            }
            let end = min(sources, next + submitBatchMax, next + ring.count - count)
            while next < end {
                push(next)
                next += 1
            }
            if next < sources {
                // Let the workers at the queue between batches.
                mutex.unlock()
                mutex.lock()
            }
        }
        while !done { allDone.wait() }
        mutex.unlock()
        let elapsed = ContinuousClock.now - start
        for _ in 0..<workers { exited.wait() }
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    // MARK: Under the lock

    private func push(_ id: Int) {
        precondition(count < ring.count, "reference queue full: \(count) of \(ring.count) (pattern \(pattern))")
        ring[(head + count) % ring.count] = id
        count += 1
        queuedHint.store(count, ordering: .relaxed)
        if sleepers > 0 { work.signal() }
    }

    private func pop() -> Int {
        let id = ring[head]
        head = (head + 1) % ring.count
        count -= 1
        queuedHint.store(count, ordering: .relaxed)
        return id
    }

    /// Records that task `id` ran: each successor it was the last predecessor of becomes ready.
    private func record(_ id: Int) {
        let (t, x) = id.quotientAndRemainder(dividingBy: width)
        completed += 1
        guard t + 1 < steps, let readers = pattern.inputs(of: x, width: width) else { return }
        let row = ((t + 1) % 2) * width
        for y in readers {
            waitingFor[row + y] -= 1
            if waitingFor[row + y] == 0 {
                // Ready: its slot now counts for the task two steps on.
                waitingFor[row + y] = Int32(pattern.inputs(of: y, width: width)!.count)
                push((t + 1) * width + y)
            }
        }
    }

    // MARK: Workers

    private func workerLoop() {
        var batch: [Int] = []
        batch.reserveCapacity(takeBatchMax)
        mutex.lock()
        while true {
            for id in batch { record(id) }
            batch.removeAll(keepingCapacity: true)
            if completed == width * steps, !done {
                done = true
                work.broadcast()
                allDone.signal()
            }
            if done { break }
            let share = min(takeBatchMax, max(1, (count + workers - 1) / workers))
            while batch.count < share, count > 0 { batch.append(pop()) }
            if !batch.isEmpty {
                // Wake the calling thread once half the ring is free, not on every pop.
                if callerWaitsForRoom, count <= ring.count / 2 {
                    callerWaitsForRoom = false
                    room.signal()
                }
                mutex.unlock()
                for id in batch {
                    let (t, x) = id.quotientAndRemainder(dividingBy: width)
                    body(context, t, x)
                }
                mutex.lock()
                continue
            }
            // Nothing ready: spin a little (a futex wake-up costs more than the finest tasks
            // measured), then sleep until a push or the end.
            mutex.unlock()
            spinForWork()
            mutex.lock()
            if count == 0 && !done {
                sleepers += 1
                work.wait()
                sleepers -= 1
            }
        }
        mutex.unlock()
    }

    /// Spins (yielding the core now and then) for up to `spinMicros` until the queue looks
    /// non-empty. Called without the lock.
    private func spinForWork() {
        guard spinMicros > 0 else { return }
        let deadline = ContinuousClock.now + .microseconds(spinMicros)
        var spins = 0
        while queuedHint.load(ordering: .relaxed) == 0 {
            spins += 1
            if spins & 255 == 0 {
                if ContinuousClock.now > deadline { return }
                sched_yield()
            }
        }
    }
}
