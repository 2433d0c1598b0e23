import Testing
@testable import ShoalCore

@Suite struct SeededGeneratorTests {
    @Test func sameSeedSameStream() {
        var a = SeededGenerator(seed: 42)
        var b = SeededGenerator(seed: 42)
        for _ in 0..<1000 { #expect(a.next() == b.next()) }
    }

    @Test func differentSeedsDiffer() {
        var a = SeededGenerator(seed: 1)
        var b = SeededGenerator(seed: 2)
        #expect((0..<8).map { _ in a.next() } != (0..<8).map { _ in b.next() })
    }

    @Test func unitDoublesAreInRangeAndSpread() {
        var g = SeededGenerator(seed: 7)
        var sum = 0.0
        for _ in 0..<100_000 {
            let x = g.nextUnitDouble()
            #expect(x >= 0 && x < 1)
            sum += x
        }
        #expect(abs(sum / 100_000 - 0.5) < 0.01)
    }

    @Test func checksumIsBlake2b256() {
        // BLAKE2b-256 of the empty string (RFC 7693 parameters, 32-byte digest).
        let hex = Checksum.blake2b([]).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        #expect(hex == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
    }

    @Test func checksumWordIsTheDigestsFirstEightBytesLittleEndian() {
        // The empty string's digest starts 0e 57 51 c0 26 e5 43 b2.
        #expect([UInt8]().withUnsafeBytes { Checksum.blake2bWord($0) } == 0xB243_E526_C051_570E)
        let text = Array("shoal".utf8)
        let digest = Checksum.blake2b(text)
        #expect(text.withUnsafeBytes { Checksum.blake2bWord($0) } == digest.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) })
    }

    /// XXH64 with seed 0 against the reference implementation (Python's `xxhash` package, which
    /// wraps Yann Collet's C code): empty, under 4, under 32 (every tail path) and many stripes.
    @Test func fastDigestIsXXH64() {
        func digest(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { FastDigest.xxh64($0) } }
        #expect(digest([]) == 0xEF46_DB37_51D8_E999)
        #expect(digest(Array("a".utf8)) == 0xD24E_C4F1_A98C_6E5B)
        #expect(digest(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
        #expect(digest(Array("0123456789abcdef0123456789abcdef0123".utf8)) == 0xC425_5BA3_D1AF_5461)
        let long = (0..<5).flatMap { _ in (0...255).map { UInt8($0) } }
        #expect(digest(long) == 0xAFC1_84AD_7938_A354)
        #expect(PayloadDigest.of(long) == digest(long))
    }
}

@Suite struct TimeTests {
    @Test func intervalsPrintInReadableUnits() {
        #expect(Interval.seconds(5).description == "5s")
        #expect(Interval.milliseconds(200).description == "200ms")
        #expect(Interval.microseconds(50).description == "50µs")
        #expect(Interval(nanoseconds: 12_660_397_451).description == "12.660s")
        #expect(Interval(nanoseconds: 1_005_000_000).description == "1.005s")
        #expect(Interval(nanoseconds: 1_234).description == "1234ns")
    }
}
