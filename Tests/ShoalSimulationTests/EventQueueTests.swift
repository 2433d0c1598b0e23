import ShoalCore
import Testing

@testable import ShoalSimulation

@Suite struct EventQueueTests {
    @Test func popsInTimeOrderWithFIFOTies() {
        var q = EventQueue<String>()
        q.schedule("c", at: Instant(nanoseconds: 30))
        q.schedule("a1", at: Instant(nanoseconds: 10))
        q.schedule("b", at: Instant(nanoseconds: 20))
        q.schedule("a2", at: Instant(nanoseconds: 10))
        q.schedule("a3", at: Instant(nanoseconds: 10))
        var order: [String] = []
        while let e = q.pop() { order.append(e.payload) }
        #expect(order == ["a1", "a2", "a3", "b", "c"])
    }

    @Test func randomScheduleComesOutSorted() {
        var g = SeededGenerator(seed: 3)
        var q = EventQueue<Int>()
        var expected: [(Int64, Int)] = []
        for i in 0..<5_000 {
            let t = Int64(g.next() % 100)
            q.schedule(i, at: Instant(nanoseconds: t))
            expected.append((t, i))
        }
        expected.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        var got: [(Int64, Int)] = []
        while let e = q.pop() { got.append((e.time.nanoseconds, e.payload)) }
        #expect(got.map(\.1) == expected.map(\.1))
    }
}
