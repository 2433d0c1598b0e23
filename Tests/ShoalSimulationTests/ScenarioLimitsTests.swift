import ShoalCore
import Testing

@testable import ShoalSimulation

/// The limits a scenario file is checked against keep the simulator's virtual-time arithmetic
/// (Int64 nanoseconds) from overflowing; these are the products it computes.
@Suite("Scenario limits")
struct ScenarioLimitsTests {
    static func nanoseconds(_ seconds: Double) -> Int64 { Int64(seconds * 1e9) }

    @Test func theLatestStartTimeFitsInVirtualTime() {
        // A peer's start: join spread (at most the duration) × its index / peers.
        let spread = Self.nanoseconds(ScenarioLimits.maxDurationSeconds)
        #expect(!spread.multipliedReportingOverflow(by: Int64(ScenarioLimits.maxPeers)).overflow)
    }

    @Test func theLongestDelaysFitInVirtualTime() {
        let latency = Interval.microseconds(ScenarioLimits.maxLatencyMicros).nanoseconds
        // Jitter is at most about 37 means; reordering adds up to ten latencies.
        let delay = latency * 37 + latency * 10 + latency
        let transmission = Int64(ScenarioLimits.maxValueBytes) * 8 * 1_000_000_000 / (1_000_000)  // 1 Mbit/s
        let end = Self.nanoseconds(ScenarioLimits.maxDurationSeconds)
        #expect(!end.addingReportingOverflow(delay).overflow)
        // A thousand of the largest values queued on one link of the slowest bandwidth.
        #expect(!end.addingReportingOverflow(delay + transmission * 1_000).overflow)
        #expect(!Interval.microseconds(ScenarioLimits.maxTaskMicros).nanoseconds.multipliedReportingOverflow(by: 5).overflow)
    }

    @Test func theMachinesAcceptTheLargestCounts() {
        // What the scenario may ask for is what the machines' settings keep (they clamp silently).
        var work = WorkSettings()
        work.slots = ScenarioLimits.maxSlots
        #expect(work.clamped.slots == ScenarioLimits.maxSlots)
        var placement = PlacementSettings()
        placement.replicas = ScenarioLimits.maxReplicas
        #expect(placement.clamped.replicas == ScenarioLimits.maxReplicas)
        // Task indices are 32 bits in a task id, plan versions Int32.
        #expect(ScenarioLimits.maxTasks * 3 < Int(Int32.max))
    }
}
