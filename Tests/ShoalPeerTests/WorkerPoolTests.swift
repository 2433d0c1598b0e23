import Foundation
import ShoalCore
import Testing

@testable import ShoalPeer
@testable import ShoalShell

/// A body that reads nothing and makes nothing: what is under test is the pool around it.
private final class NothingRunner: TaskBodyRunner, @unchecked Sendable {
    var catalogue: [UInt64] { [] }
    func run(
        _ body: TaskBody, workflow: String, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) -> Result<[[UInt8]], TaskFailure> { .success([]) }
}

@Suite("Worker pool")
struct WorkerPoolTests {
    /// Found by `shoal bench move`: a peer's resident size grew by the value's 64 MiB with every
    /// workflow. The pool's queue was an array it compacted only past 1,024 jobs, so a job it had
    /// run kept its input bytes alive, whatever the payload store released.
    @Test func aJobsInputBytesAreFreedOnceItRanAndItsResultWasTaken() throws {
        let results = DispatchSemaphore(value: 0)
        let pool = WorkerPool(runners: [NothingRunner()]) { results.signal() }
        defer { pool.stop() }
        let call = ExecutableCall(body: .registered(name: "nothing", arguments: []), accesses: [.init(0, .in)], label: "nothing")
        weak var storage: AnyObject?
        for i in 0..<4 {
            let bytes = [UInt8](repeating: UInt8(i), count: 1 << 20)
            if i == 0 { storage = unsafeBitCast(bytes, to: AnyObject.self) }  // the array's buffer
            let job = TaskJob(
                task: TaskRef(WorkflowID(raw: 1), i), catalogueKey: 1, inputs: [DataValue(bytes: 1 << 20, content: UInt64(i))],
                attempt: 1, call: call, inputBytes: .success([bytes]))
            pool.submit(job, workflowName: "w")
        }
        var taken = 0
        while taken < 4 {
            #expect(results.wait(timeout: .now() + 10) == .success, "the pool ran \(taken) of 4 jobs in 10 s")
            taken += pool.takeResults().count
        }
        #expect(storage == nil, "the first job's input bytes are still referenced after it ran")
    }
}
