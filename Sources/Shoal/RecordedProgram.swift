import ShoalCore
import ShoalSimulation
import Synchronization

/// A program's side while its calls are recorded (`Shoal.record`): it keeps which task each call
/// runs and which data it reads and writes, and runs nothing.
final class CallRecorder: Sendable {
    private struct State {
        var dataCount = 0
        var calls: [RecordedShape.Call] = []
    }
    private let state = Mutex(State())

    func define(_ datum: DatumID) {
        state.withLock { $0.dataCount = max($0.dataCount, Int(datum.raw) + 1) }
    }

    func submit(name: String, accesses: [(datum: DatumID, direction: Direction)]) {
        state.withLock { s in
            s.calls.append(RecordedShape.Call(task: name, accesses: accesses.map { .init(Int($0.datum.raw), $0.direction) }))
        }
    }

    var statistics: RunStatistics {
        var r = RunStatistics()
        r.submitted = state.withLock { $0.calls.count }
        return r
    }

    var recorded: (dataCount: Int, calls: [RecordedShape.Call]) { state.withLock { ($0.dataCount, $0.calls) } }

    /// What a recorded program's wait throws: the calls after a wait depend on its value, which a
    /// recording does not have.
    static func waited(on datum: String) -> ShoalError {
        .recording("the program waits on '\(datum)': a recording holds no values, so record only the calls before its first wait")
    }
}

extension Shoal {
    /// The calls `program` makes, recorded without running any task: which task each call runs
    /// and what it reads and writes, as a scenario shape (`RecordedShape`) whose bodies the
    /// simulator models with `weights` (by task name). This is how a scenario plays a real
    /// program's DAG (the shape `crossCorrelation` is the example program's, recorded) instead of
    /// a copy of it. The program must not wait (a recording has no values: `wait(on:)` throws),
    /// persist or open objects; closure tasks are recorded by name like registered ones.
    public static func record(
        name: String, weights: [String: RecordedShape.Weight] = [:], initialWeight: Double = 1,
        _ program: (Workflow) throws -> Void
    ) throws -> RecordedShape {
        let recorder = CallRecorder()
        try program(Workflow(recorder: recorder, name: name))
        let (dataCount, calls) = recorder.recorded
        return RecordedShape(name: name, dataCount: dataCount, calls: calls, weights: weights, initialWeight: initialWeight)
    }
}
