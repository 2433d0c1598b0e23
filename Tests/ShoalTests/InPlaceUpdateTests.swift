import Synchronization
import Testing

@testable import Shoal

/// A value whose storage counts how often copy-on-write had to copy it.
private final class CountedStorage: @unchecked Sendable {
    var payload: [Int]
    init(_ payload: [Int]) { self.payload = payload }
}

private let copies = Atomic<Int>(0)

private struct Counted: Sendable {
    var storage: CountedStorage
    init(size: Int) { storage = CountedStorage(Array(repeating: 0, count: size)) }
    mutating func bump() {
        if !isKnownUniquelyReferenced(&storage) {
            copies.add(1, ordering: .relaxed)
            storage = CountedStorage(storage.payload)
        }
        storage.payload[0] += 1
    }
}

/// An `inout` task that is the only reader of the old version, and commutative members after the
/// first, get the value itself to mutate: big values are not copied on every update.
@Suite("In-place updates", .serialized)
struct InPlaceUpdateTests {
    fileprivate static let bump = TaskDefinition<DataRef<Counted>, Void>("bump") { ref, context in
        try context.update(ref) { $0.bump() }
    }

    @Test func anInoutChainMutatesInPlace() async throws {
        copies.store(0, ordering: .relaxed)
        let final = try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 2))) { wf in
            let x = wf.value(Counted(size: 1_000))
            for _ in 0..<50 { wf.submit(Self.bump, x, .inout(x)) }
            return try await wf.wait(on: x)
        }
        #expect(final.storage.payload[0] == 50)
        #expect(copies.load(ordering: .relaxed) == 0)
    }

    @Test func commutativeMembersAfterTheFirstMutateInPlace() async throws {
        copies.store(0, ordering: .relaxed)
        let final = try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 2))) { wf in
            let x = wf.value(Counted(size: 1_000))
            for _ in 0..<50 { wf.submit(Self.bump, x, .commutative(x)) }
            return try await wf.wait(on: x)
        }
        #expect(final.storage.payload[0] == 50)
        // The first member reads the version before the group, which stays readable: one copy.
        #expect(copies.load(ordering: .relaxed) <= 1)
    }
}
