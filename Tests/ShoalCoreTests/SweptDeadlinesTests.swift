import Testing

@testable import ShoalCore

/// One sweep timer stands for every fetch's (and result's) timeout: each entry is acted on at its
/// deadline or at most one grid step after it, in the order set, and one sweep is pending at most.
@Suite struct SweptDeadlinesTests {
    static func at(_ ms: Int64) -> Instant { Instant.zero + .milliseconds(ms) }

    @Test func entriesComeDueOnTheGridInTheOrderSet() {
        var d = SweptDeadlines<Int>(interval: .milliseconds(800), steps: 8)  // grid of 100 ms
        #expect(d.granularity == .milliseconds(100))
        // The first deadline (830 ms) schedules the sweep at the next grid point, 900 ms.
        #expect(d.add(1, attempt: 1, now: Self.at(30)) == .milliseconds(870))
        #expect(d.add(2, attempt: 1, now: Self.at(50)) == nil)  // one sweep pending
        #expect(d.add(3, attempt: 2, now: Self.at(150)) == nil)
        let first = d.sweep(now: Self.at(900))
        #expect(first.due.map(\.id) == [1, 2])
        #expect(first.due.map(\.attempt) == [1, 1])
        // Entry 3's deadline is 950 ms: next grid point 1,000 ms, 100 ms from now.
        #expect(first.next == .milliseconds(100))
        #expect(d.add(4, attempt: 1, now: Self.at(900)) == nil)  // the next sweep is pending already
        let second = d.sweep(now: Self.at(1_000))
        #expect(second.due.map(\.id) == [3])
        #expect(second.next == .milliseconds(700))  // entry 4: deadline 1,700 ms, on the grid
        let third = d.sweep(now: Self.at(1_700))
        #expect(third.due.map(\.id) == [4])
        #expect(third.next == nil && d.count == 0)
        // Nothing pending: the next entry schedules a sweep again.
        #expect(d.add(5, attempt: 1, now: Self.at(2_000)) == .milliseconds(800))
    }

    @Test func noEntryIsActedOnBeforeItsDeadlineOrMoreThanAStepAfter() {
        var g = SeededGenerator(seed: 17)
        var d = SweptDeadlines<Int>(interval: .milliseconds(500))
        var now = Instant.zero
        var sweepAt: Instant?
        var set: [Int: Instant] = [:]
        for id in 0..<2_000 {
            now = now + .microseconds(Int64(g.next() % 3_000))
            while let s = sweepAt, !(now < s) {
                let (due, next) = d.sweep(now: s)
                for e in due {
                    #expect(!(s < set[e.id]! + d.interval) && s - (set[e.id]! + d.interval) < d.granularity)
                    set[e.id] = nil
                }
                sweepAt = next.map { s + $0 }
            }
            set[id] = now
            if let delay = d.add(id, attempt: 1, now: now) {
                #expect(sweepAt == nil)
                sweepAt = now + delay
            }
        }
        #expect(d.count == set.count)
    }
}
