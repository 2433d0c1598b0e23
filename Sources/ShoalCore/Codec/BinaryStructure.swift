/// A readable view of a value in Shoal's binary encoding, made without its Swift type: what
/// `shoal kv get` prints for a binary persistent object.
///
/// The encoding records lengths, not types (docs/value-encoding.md), so the view is read from the
/// lengths: the key table gives every field name; a region whose length prefix covers it exactly
/// and whose entries name keys of the table is shown as a struct (or a dictionary); a UTF-8 text
/// region as a string; an unkeyed container as a list, its elements split where their lengths
/// allow; a count followed by a whole number of 1-, 2-, 4- or 8-byte elements as a scalar array,
/// summarised; and a 1-, 2-, 4- or 8-byte leaf as its bytes with the numbers it may be (the more
/// plausible reading first). These are readings, not certainties: `Int(7)` and the `[UInt8]`
/// `[0, 0, 0, 0, 0, 0, 0]` are the same 8 bytes, and which one was written only the type knows.
///
/// Total on any input: a malformed header throws `BinaryStructure.Malformed`, and a region that
/// fits no form is shown as bytes. Output is bounded (`maxLines`, and the elements shown per
/// container), and so is the work (nesting up to 64, each region parsed a bounded number of times).
///
/// It reads the layout through the decoder's own readers (`DecodingState`: varints, lengths,
/// strings, the header and key table, keyed entries, unkeyed headers), so the two cannot drift
/// apart: what the view shows as a container is what the decoder would accept as one.
public enum BinaryStructure {
    /// The bytes are not a binary value: the header (version, key table, presence byte) is bad.
    public struct Malformed: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "not a binary value: \(message) at byte \(offset)" }
    }

    /// Deepest nesting shown; deeper regions are shown as bytes.
    static let maxDepth = 64
    /// Entries of a keyed container, elements of a list, shown before "… N more".
    static let maxEntriesShown = 50
    static let maxElementsShown = 10
    /// Elements of a scalar array, characters of a string, bytes of a leaf shown.
    static let maxScalarsShown = 6
    static let maxStringShown = 200
    static let maxBytesShown = 32

    /// The view of `bytes`: a first line naming the encoding version and the key table, then the
    /// value, one field or element a line, indented two spaces a level.
    public static func describe(_ bytes: [UInt8], maxLines: Int = 2_000) throws -> String {
        guard !bytes.isEmpty else { throw Malformed(offset: 0, message: "no bytes") }
        let parser = Parser(state: DecodingState(bytes: bytes, limits: .default))
        let p: Int
        let isNil: Bool
        do {
            p = try parser.state.readHeader()
            let top = DecodingCursor(position: p, end: bytes.count)
            isNil = try parser.state.presenceSlot(cursor: top, at: p, path: []).isNil
        } catch let error as BinaryDecodingError {
            throw Malformed(offset: error.offset, message: error.message)
        }
        switch (isNil, bytes.count - p - 1) {
        case (true, 0), (false, 1...): break
        case (let isNil, let after):
            throw Malformed(offset: p, message: "the presence byte is \(isNil ? 0 : 1) with \(after) bytes after it")
        }
        var out = Output(maxLines: maxLines)
        let keys = parser.state.keys
        let names = keys.isEmpty ? "no key names" : "key names: " + keys.map(quoted).joined(separator: ", ")
        out.line(0, "binary encoding version \(bytes[0]), \(bytes.count) bytes, \(names)")
        if isNil {
            out.line(0, "nil")
        } else {
            render(parser.node(p + 1..<bytes.count, depth: 0), label: "", 0, &out)
        }
        return out.text
    }

    /// One region as read from its lengths.
    indirect enum Node {
        /// A keyed container: each entry's key name and value (nil: an entry of length 0).
        case keyed([(key: String, value: Node?)])
        /// An unkeyed container of `count` elements, those at `nils` nil; `elements` are the
        /// others in order, or nil when their lengths cannot be told apart.
        case list(count: Int, nils: [Int], elements: [Node]?, bytes: Int)
        case string(String)
        /// A fast-path scalar array: `count` elements of `width` bytes.
        case scalars(count: Int, width: Int, bytes: ArraySlice<UInt8>)
        /// 1, 2, 4 or 8 bytes: a number, a Bool, or a one-byte empty container.
        case fixed(ArraySlice<UInt8>)
        /// Bytes that fit none of the forms (or lie deeper than `maxDepth`).
        case opaque(ArraySlice<UInt8>)
    }

    /// The readings of regions. Every read of the layout goes through the decoder's
    /// `DecodingState`; a reading is a form whose read does not throw.
    struct Parser {
        let state: DecodingState
        var bytes: [UInt8] { state.bytes }
        var keys: [String] { state.keys }

        /// An unsigned LEB128 at `p` (at most 10 bytes, within 64 bits), before `end`.
        func varint(_ p: inout Int, _ end: Int) -> UInt64? {
            try? state.readVarint(at: &p, end: end, path: [])
        }

        /// A varint that is at most the bytes left before `end`.
        func length(_ p: inout Int, _ end: Int) -> Int? {
            try? state.readLength(at: &p, end: end, path: [])
        }

        /// The payload of a region that is one length prefix and exactly that many bytes.
        func prefixed(_ range: Range<Int>) -> Range<Int>? {
            var p = range.lowerBound
            guard let n = length(&p, range.upperBound), p + n == range.upperBound else { return nil }
            return p..<range.upperBound
        }

        /// The most plausible reading of `range`. Strong readings first: a keyed container
        /// with a non-nil entry, printable text, a list whose elements split exactly. Then a
        /// number for 1, 2, 4 or 8 bytes. Then weak readings: a keyed container of nil entries
        /// only (`[true, false]` reads as one too), a list whose elements cannot be split, a
        /// scalar array. Bytes last.
        func node(_ range: Range<Int>, depth: Int) -> Node {
            let n = range.count
            if depth >= BinaryStructure.maxDepth || n == 0 { return .opaque(bytes[range]) }
            let keyed = keyed(range, depth: depth)
            if let keyed, case .keyed(let entries) = keyed, entries.contains(where: { $0.value != nil }) {
                return keyed
            }
            if let text = string(range) { return .string(text) }
            let list = list(range, depth: depth)
            if let list, case .list(_, _, let elements, _) = list, elements != nil { return list }
            if [1, 2, 4, 8].contains(n) { return .fixed(bytes[range]) }
            if let keyed { return keyed }
            if let list { return list }
            if let scalars = scalars(range) { return scalars }
            return .opaque(bytes[range])
        }

        /// `byteCount entry*` with every entry naming a distinct key of the table; at least one.
        func keyed(_ range: Range<Int>, depth: Int) -> Node? {
            guard !keys.isEmpty, let payload = prefixed(range), !payload.isEmpty,
                let entries = try? state.keyedEntries(payload, path: [])
            else { return nil }
            var shown: [(key: String, value: Node?)] = []
            for entry in entries.prefix(BinaryStructure.maxEntriesShown) {
                let value = entry.start..<entry.end
                shown.append((keys[entry.key], value.isEmpty ? nil : node(value, depth: depth + 1)))
            }
            if entries.count > shown.count {
                shown.append(("… \(entries.count - shown.count) more entries", nil))
            }
            return .keyed(shown)
        }

        /// `byteCount utf8` whose text is printable (tabs and line breaks allowed); not empty.
        func string(_ range: Range<Int>) -> String? {
            var p = range.lowerBound
            guard let text = try? state.readString(at: &p, end: range.upperBound, path: []),
                p == range.upperBound, !text.isEmpty,
                text.unicodeScalars.allSatisfy({ $0.value >= 0x20 || $0 == "\t" || $0 == "\n" || $0 == "\r" })
            else { return nil }
            return text
        }

        /// `byteCount count nilCount nilIndex* element*`.
        func list(_ range: Range<Int>, depth: Int) -> Node? {
            guard let payload = prefixed(range) else { return nil }
            var p = payload.lowerBound
            let end = payload.upperBound
            guard let (count, nils) = try? state.unkeyedHeader(at: &p, end: end, path: []) else { return nil }
            let present = count - nils.count
            if present == 0 && p != end { return nil }
            guard let ranges = split(p..<end, into: present) else {
                return .list(count: count, nils: nils, elements: nil, bytes: end - p)
            }
            let elements = ranges.prefix(BinaryStructure.maxElementsShown).map { node($0, depth: depth + 1) }
            return .list(count: count, nils: nils, elements: Array(elements), bytes: end - p)
        }

        /// `range` cut into `count` elements: each a length-prefixed region, or each a scalar
        /// array of one width, or all of one fixed width; nil when none of these fits exactly.
        func split(_ range: Range<Int>, into count: Int) -> [Range<Int>]? {
            if count == 0 { return range.isEmpty ? [] : nil }
            guard count <= range.count else { return nil }
            // Each element's own prefix gives its size: bytes for strings and containers, a count
            // of `width`-byte scalars for fast-path arrays.
            for width in [0, 8, 4, 2, 1] {
                var p = range.lowerBound
                var ranges: [Range<Int>] = []
                ranges.reserveCapacity(count)
                while ranges.count < count {
                    let start = p
                    guard let n = varint(&p, range.upperBound) else { break }
                    let (size, overflow) = n.multipliedReportingOverflow(by: UInt64(max(width, 1)))
                    guard !overflow, size <= UInt64(range.upperBound - p) else { break }
                    p += Int(size)
                    ranges.append(start..<p)
                }
                if ranges.count == count && p == range.upperBound { return ranges }
            }
            let width = range.count / count
            guard range.count % count == 0, [1, 2, 4, 8].contains(width) else { return nil }
            return (0..<count).map { range.lowerBound + $0 * width..<range.lowerBound + ($0 + 1) * width }
        }

        /// `count raw`, the raw part a whole number of 1-, 2-, 4- or 8-byte elements.
        func scalars(_ range: Range<Int>) -> Node? {
            var p = range.lowerBound
            guard let count = varint(&p, range.upperBound), count > 0 else { return nil }
            let rest = UInt64(range.upperBound - p)
            guard rest % count == 0, [1, 2, 4, 8].contains(rest / count) else { return nil }
            return .scalars(count: Int(count), width: Int(rest / count), bytes: bytes[p..<range.upperBound])
        }
    }

    struct Output {
        let maxLines: Int
        var text = ""
        var lines = 0
        var full: Bool { lines >= maxLines }

        mutating func line(_ depth: Int, _ content: String) {
            guard lines <= maxLines else { return }
            lines += 1
            if lines > maxLines {
                text += "… (stopped after \(maxLines) lines)\n"
                return
            }
            text += String(repeating: "  ", count: depth) + content + "\n"
        }
    }

    static func render(_ node: Node, label: String, _ depth: Int, _ out: inout Output) {
        guard !out.full else { return out.line(depth, "…") }
        switch node {
        case .keyed(let entries):
            out.line(depth, label + "{")
            for entry in entries {
                if let value = entry.value {
                    render(value, label: entry.key + ": ", depth + 1, &out)
                } else {
                    out.line(depth + 1, entry.key.hasPrefix("… ") ? entry.key : entry.key + ": nil")
                }
            }
            out.line(depth, "}")
        case .list(let count, let nils, let elements, let byteCount):
            let nilNote = nils.isEmpty ? "" : ", \(nils.count) nil"
            guard let elements else {
                out.line(
                    depth,
                    label + "[\(count) elements\(nilNote), \(byteCount) bytes whose element sizes are not told apart]")
                return
            }
            guard count > 0 else { return out.line(depth, label + "[]") }
            out.line(depth, label + "[\(count) element\(count == 1 ? "" : "s")\(nilNote)")
            var present = elements.makeIterator()
            var shown = 0
            for index in 0..<count {
                guard shown < maxElementsShown else {
                    out.line(depth + 1, "… \(count - index) more")
                    break
                }
                if nils.contains(index) {
                    out.line(depth + 1, "[\(index)] nil")
                } else if let element = present.next() {
                    render(element, label: "[\(index)] ", depth + 1, &out)
                } else {
                    out.line(depth + 1, "… \(count - index) more")
                    break
                }
                shown += 1
            }
            out.line(depth, "]")
        case .string(let text):
            let clipped = text.count > maxStringShown ? String(text.prefix(maxStringShown)) + "…" : text
            out.line(
                depth, label + quoted(clipped) + (text.count > maxStringShown ? " (\(text.utf8.count) bytes)" : ""))
        case .scalars(let count, let width, let bytes):
            out.line(
                depth, label + "\(count) × \(width)-byte scalars: " + scalarSummary(count: count, width: width, bytes))
        case .fixed(let bytes):
            out.line(depth, label + hex(bytes) + " (" + readings(bytes).joined(separator: " or ") + ")")
        case .opaque(let bytes):
            out.line(depth, label + "\(bytes.count) bytes of no form told apart: " + hex(bytes))
        }
    }

    /// The numbers `bytes` (1, 2, 4 or 8, little-endian) may be, the more plausible first.
    static func readings(_ bytes: ArraySlice<UInt8>) -> [String] {
        let bits = bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        switch bytes.count {
        case 1:
            if bits == 0 { return ["0", "false", "an empty string, array or struct"] }
            return bits == 1 ? ["1", "true"] : ["\(bits)", "Int8 \(Int8(truncatingIfNeeded: bits))"]
        case 2:
            return ["Int16 \(Int16(truncatingIfNeeded: bits))"] + (bits >= 0x8000 ? ["UInt16 \(bits)"] : [])
        case 4:
            let int = "Int32 \(Int32(truncatingIfNeeded: bits))"
            let float = "Float \(Float(bitPattern: UInt32(bits)))"
            return floatFirst(bits, width: 4) ? [float, int] : [int, float]
        default:
            let int = "Int64 \(Int64(bitPattern: bits))" + (bits >= 1 << 63 ? " (UInt64 \(bits))" : "")
            let double = "Double \(Double(bitPattern: bits))"
            return floatFirst(bits, width: 8) ? [double, int] : [int, double]
        }
    }

    /// Whether `bits` read better as a float than as an integer: a normal float of moderate
    /// magnitude against an integer too large for everyday counts (more than 2^24 for 4 bytes,
    /// 2^53 for 8). Small integers are subnormal floats, and moderate floats are huge integers.
    static func floatFirst(_ bits: UInt64, width: Int) -> Bool {
        let magnitude: Double
        let integer: UInt64
        if width == 4 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: bits))
            guard f.isNormal else { return false }
            magnitude = Double(f.magnitude)
            integer = UInt64(Int32(truncatingIfNeeded: bits).magnitude)
            return magnitude > 1e-20 && magnitude < 1e20 && integer > 1 << 24
        }
        let d = Double(bitPattern: bits)
        guard d.isNormal else { return false }
        magnitude = d.magnitude
        integer = Int64(bitPattern: bits).magnitude
        return magnitude > 1e-100 && magnitude < 1e100 && integer > 1 << 53
    }

    /// The first elements of a scalar array in each reading, the more plausible first.
    static func scalarSummary(count: Int, width: Int, _ bytes: ArraySlice<UInt8>) -> String {
        let shown = min(count, maxScalarsShown)
        let elements = (0..<shown).map { i -> UInt64 in
            let start = bytes.startIndex + i * width
            return bytes[start..<start + width].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        let more = count > shown ? ", …" : ""
        func list(_ name: String, _ format: (UInt64) -> String) -> String {
            "as \(name) [" + elements.map(format).joined(separator: ", ") + more + "]"
        }
        switch width {
        case 1:
            return list("bytes") { String($0, radix: 16).leftPadded(to: 2) }
        case 2:
            return list("Int16") { "\(Int16(truncatingIfNeeded: $0))" }
        case 4:
            let int = list("Int32") { "\(Int32(truncatingIfNeeded: $0))" }
            let float = list("Float") { "\(Float(bitPattern: UInt32(truncatingIfNeeded: $0)))" }
            let floats = elements.filter { floatFirst($0, width: 4) || $0 == 0 }.count * 2 > elements.count
            return floats ? float + " or " + int : int + " or " + float
        default:
            let int = list("Int64") { "\(Int64(bitPattern: $0))" }
            let double = list("Double") { "\(Double(bitPattern: $0))" }
            let doubles = elements.filter { floatFirst($0, width: 8) || $0 == 0 }.count * 2 > elements.count
            return doubles ? double + " or " + int : int + " or " + double
        }
    }

    static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        let shown = bytes.prefix(maxBytesShown).map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
        return bytes.count > maxBytesShown ? shown + " … (\(bytes.count) bytes)" : shown
    }

    /// `text` in double quotes, with quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
