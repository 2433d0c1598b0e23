import Foundation
import ShoalTestSupport
import Testing

/// `shoal bench trivial` and `shoal bench stencil` print the bare reference scheduler's figure
/// beside the engine's, and their ratio. Not timed: only the lines and that their numbers agree
/// with each other are checked (the figures depend on the machine).
@Suite("shoal bench trivial and stencil: the engine beside the reference scheduler")
struct BenchReferenceTests {
    /// Runs `shoal` on a thread of its own: waiting for a benchmark child would otherwise hold one
    /// of the few cooperative threads that the engine tests' programs need to go on.
    static func shoal(_ arguments: [String], timeoutSeconds: Double) async throws -> ChildProcess.Result {
        try await withCheckedThrowingContinuation { c in
            Thread { c.resume(with: Result { try ChildProcess.shoal(arguments, timeoutSeconds: timeoutSeconds) }) }.start()
        }
    }

    /// The numbers in `line`, in order (a word that parses as a number, trailing punctuation cut).
    static func numbers(_ line: Substring) -> [Double] {
        line.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: ",;()"))) }
    }

    static func line(_ output: String, startingWith prefix: String) -> Substring? {
        output.split(separator: "\n").first { $0.hasPrefix(prefix) }
    }

    @Test func trivialPrintsTheReferenceAndTheRatio() async throws {
        let r = try await Self.shoal(["bench", "trivial", "--tasks", "20000", "--runs", "3", "--workers", "2"], timeoutSeconds: 120)
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        let out = r.stdout
        // Each run: the engine's line, then the reference's with the run's ratio.
        let runs = out.split(separator: "\n").filter { $0.hasPrefix("  reference: 20000 tasks in ") }
        #expect(runs.count == 3, "\(out)")
        let engine = try #require(Self.line(out, startingWith: "empty tasks/s: best "), "\(out)")
        let reference = try #require(Self.line(out, startingWith: "reference: best "), "\(out)")
        let ratio = try #require(Self.line(out, startingWith: "engine/reference: best "), "\(out)")
        #expect(reference.contains("M tasks/s, median") && ratio.contains("in the same run"), "\(out)")
        let (e, ref, q) = (Self.numbers(engine), Self.numbers(reference), Self.numbers(ratio))
        #expect(e.count >= 2 && ref.count >= 2 && q.count >= 2, "\(out)")
        // Best is at least the median, and every figure is positive.
        for pair in [e, ref, q] where pair.count >= 2 { #expect(pair[0] >= pair[1] && pair[1] > 0, "\(out)") }
    }

    @Test func stencilMETGPrintsTheEngineTheReferenceAndTheirRatio() async throws {
        let r = try await Self.shoal(
            ["bench", "stencil", "--metg", "--steps", "20", "--repeats", "1", "--workers", "2"], timeoutSeconds: 120)
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        let out = r.stdout
        #expect(out.contains("reference: granularity(µs)"), "\(out)")
        let metg = try #require(Self.line(out, startingWith: "METG(50%): engine "), "\(out)")
        #expect(metg.contains(", reference "), "\(out)")
        // Either both were reached and the ratio is printed with what it means, or it says why not.
        #expect(metg.contains("reference METG / engine METG") || metg.contains("no ratio"), "\(out)")
        // Every sweep row holds both schedulers' three figures and the ratio of their tasks/s.
        let rows = out.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(!rows.isEmpty, "\(out)")
        for row in rows {
            let n = Self.numbers(row)
            #expect(n.count == 8, "\(row)")
            if n.count == 8 { #expect(abs(n[7] - n[3] / n[6]) <= 0.01 + 0.01 * n[7], "\(row)") }
        }
    }

    @Test func stencilAtAGranularityPrintsTheReference() async throws {
        let r = try await Self.shoal(["bench", "stencil", "--steps", "50", "--iterations", "10"], timeoutSeconds: 60)
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        let line = try #require(Self.line(r.stdout, startingWith: "reference: 100 tasks in "), "\(r.stdout)")
        #expect(line.contains("engine/reference"), "\(r.stdout)")
    }
}
