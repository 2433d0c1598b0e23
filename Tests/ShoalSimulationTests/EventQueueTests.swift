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

    /// Pops between schedules (as a run does), against a sorted list: each pop is the earliest
    /// pending event, ties in scheduling order.
    @Test func interleavedSchedulesAndPopsMatchASortedList() {
        var g = SeededGenerator(seed: 11)
        var q = EventQueue<Int>()
        var pending: [(time: Int64, id: Int)] = []
        var now: Int64 = 0
        for id in 0..<6_000 {
            let t = now + Int64(g.next() % 50)
            q.schedule(id, at: Instant(nanoseconds: t))
            pending.append((t, id))
            if g.next() % 3 != 0 {
                let e = q.pop()!
                let earliest = pending.indices.min { pending[$0].time != pending[$1].time ? pending[$0].time < pending[$1].time : pending[$0].id < pending[$1].id }!
                #expect(e.payload == pending[earliest].id && e.time.nanoseconds == pending[earliest].time)
                now = e.time.nanoseconds
                pending.remove(at: earliest)
            }
        }
        #expect(q.count == pending.count)
    }
}
