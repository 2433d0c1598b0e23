import Foundation
import ShoalTestSupport
import Testing

/// `shoal bench memory` measures each case so it cannot borrow the memory of the case before it:
/// each figure is the same whichever order the cases run in. Not timed: only bytes are compared.
@Suite("shoal bench memory: cases independent of their order")
struct BenchMemoryTests {
    static let tasks = 200_000

    /// The figure printed just before `unit` on the line that contains `label`.
    static func figure(_ output: String, _ label: String, unit: String = " bytes per pending task") -> Double? {
        for line in output.split(separator: "\n") where line.contains(label) {
            guard let end = line.range(of: unit) else { continue }
            let number = line[..<end.lowerBound].split(separator: " ").last ?? ""
            return Double(number)
        }
        return nil
    }

    struct Figures {
        var without: Double
        var withInt: Double
        /// Optional so the two figures above are compared even where these are missing.
        var withStruct: Double?
        var reference: Double?
    }

    static func run(_ extra: [String]) throws -> (Figures, String) {
        let r = try ChildProcess.shoal(["bench", "memory", "--tasks", String(tasks)] + extra, timeoutSeconds: 300)
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        let out = r.stdout
        return (
            Figures(
                without: try #require(figure(out, "without arguments"), "\(out)"),
                withInt: try #require(figure(out, "with an Int argument"), "\(out)"),
                withStruct: figure(out, "with a 32-byte struct argument"),
                reference: figure(out, "reference", unit: " bytes per element")),
            out
        )
    }

    /// Equal up to the allocator's noise, which grows a little when the machine is busy (how
    /// submissions are batched depends on whether workers sleep): 2 bytes or 2 %.
    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= max(2, 0.02 * max(a, b)) }

    @Test func theFiguresDoNotDependOnTheOrderOfTheCases() throws {
        let (first, out) = try Self.run([])
        // An Int argument is stored inline in the task's argument container: it costs what a task
        // without arguments costs, up to the allocator's noise. (Measured one after the other in one
        // process, the second case read 39 or 139 bytes against 86 for the first.)
        #expect(Self.close(first.withInt, first.without), "\(out)")
        #expect(first.without > 16, "\(out)")
        // A 32-byte argument does not fit inline: it is boxed on the heap.
        let withStruct = try #require(first.withStruct, "\(out)")
        #expect(withStruct >= first.without + 32, "\(out)")
        // The method counts what was allocated: 64 bytes per 64-byte element.
        let reference = try #require(first.reference, "\(out)")
        #expect(abs(reference - 64) < 1, "\(out)")
        #expect(out.contains("fresh process") && out.contains("mallinfo2"), "the output says how it was measured: \(out)")

        // The other way round, each case reads what it read before.
        let (reversed, out2) = try Self.run(["--cases", "reference,struct-arg,int-arg,none"])
        #expect(Self.close(reversed.without, first.without), "first: \(out)\nreversed: \(out2)")
        #expect(Self.close(reversed.withInt, first.withInt), "first: \(out)\nreversed: \(out2)")
        #expect(Self.close(try #require(reversed.withStruct), withStruct), "first: \(out)\nreversed: \(out2)")
        #expect(Self.close(try #require(reversed.reference), reference), "first: \(out)\nreversed: \(out2)")
    }
}
