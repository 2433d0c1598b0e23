import ArgumentParser
import Foundation
import Shoal
import ShoalCore
import ShoalPeer
import ShoalStore
import ShoalWire

/// `shoal kv put/get/ls/rm`: read and write a local shard directly (`--data-dir`), or the
/// cluster's persistent objects through a peer (`--peer`).
struct KV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Read and write values in a local store (--data-dir DIR) or a cluster's persistent objects (--peer ADDR).",
        subcommands: [Put.self, Get.self, List.self, Remove.self])
}

extension ShardTable: ExpressibleByArgument {}

/// A command-line failure with a message meant for the user (printed as `error: ...`, exit 1).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A `shoal kv` argument that is not valid UTF-8 (exit 2). Keys are UTF-8 text on the command
/// line; converting invalid bytes (as Swift's `CommandLine.arguments` does, with U+FFFD) would
/// make different keys name the same entry, so they are refused instead.
struct ArgumentNotUTF8: Error, CustomStringConvertible {
    /// The argument as given, escaped (`\xHH` for the bytes that are not UTF-8).
    var argument: String
    /// Whether it is the argument the command's key was parsed from.
    var isKey: Bool

    var description: String {
        isKey
            ? "the key '\(argument)' is not valid UTF-8: shoal kv takes keys as UTF-8 text and never converts them"
            : "the argument '\(argument)' is not valid UTF-8: shoal kv takes its arguments as UTF-8 text and "
                + "never converts them (a binary value can come from standard input or --file)"
    }
}

/// The program's arguments as the bytes it was given, before Swift decoded them.
enum RawArguments {
    /// Every argument after the program name.
    static func all() -> [[UInt8]] {
        (1..<Int(CommandLine.argc)).map { index in
            guard let argument = CommandLine.unsafeArgv[index] else { return [] }
            return Array(UnsafeRawBufferPointer(start: argument, count: strlen(argument)))
        }
    }

    /// Throws `ArgumentNotUTF8` for the first argument that is not valid UTF-8; it is called the
    /// key when `key` (the parsed, converted text) is what that argument decodes to.
    static func requireUTF8(key: String?) throws {
        for argument in all() where String(validating: argument, as: UTF8.self) == nil {
            throw ArgumentNotUTF8(
                argument: KeyText.escaped(argument), isKey: key == String(decoding: argument, as: UTF8.self))
        }
    }
}

/// Exactly one of a local store and a cluster; a cluster's objects live in the placement table of
/// each replica, not in `--table`. Listing and removing are not served by peers yet.
func validateWhere(_ store: StoreOptions, _ cluster: PeerOptions, clusterServed: Bool = true) throws {
    guard (store.dataDirectory == nil) != (cluster.peer == nil) else {
        throw ValidationError("give --data-dir DIR (a local store) or --peer ADDR (a cluster), one of them")
    }
    if cluster.peer != nil {
        guard clusterServed else {
            throw ValidationError("listing and removing a cluster's objects are not served by peers yet: only put and get take --peer")
        }
        guard store.table == .values else { throw ValidationError("--table is for a local store (--data-dir)") }
    }
}

/// `runKV` for the subcommands that may talk to a cluster.
func runKV(key: String?, _ body: () async throws -> Void) async throws {
    try await clientErrors {
        try RawArguments.requireUTF8(key: key)
        try await body()
    }
}

/// Runs the body of a `shoal kv` subcommand after checking that every argument is UTF-8, and
/// reports failures as one line: `error: ...` and exit 1 when the operation failed (no store, a
/// damaged store or record, a missing key), exit 2 when an argument cannot be used as given (not
/// UTF-8, or a key too long or empty).
func runKV(key: String?, _ body: () throws -> Void) throws {
    try exitOnError {
        try RawArguments.requireUTF8(key: key)
        try body()
    }
}

/// Where the store lives and which table to use.
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The store's data directory.")
    var dataDirectory: String?

    @Option(help: "The table: \(ShardTable.allCases.map(\.rawValue).joined(separator: ", ")).")
    var table: ShardTable = .values

    /// Opens the store; with `create` false a missing store is an error rather than created. A
    /// damaged store is never created over: it throws `ShardError.damaged`.
    func open(create: Bool) throws -> LMDBShard {
        guard let dataDirectory else { throw ValidationError("give --data-dir DIR (a local store) or --peer ADDR (a cluster)") }
        if !create && !FileManager.default.fileExists(atPath: dataDirectory + "/data.mdb") {
            throw CommandFailure("no store in '\(dataDirectory)' (expected \(dataDirectory)/data.mdb)")
        }
        return try LMDBShard(directory: dataDirectory)
    }
}

/// Bytes of a key given on the command line: its UTF-8, exactly as typed (`runKV` has refused
/// arguments that are not UTF-8, so nothing was converted).
private func keyBytes(_ key: String) -> [UInt8] { Array(key.utf8) }

/// What `kv ls` prints for an entry whose record failed verification.
private func damageSummary(_ error: ShardError) -> String {
    switch error {
    case .checksumMismatch: "checksum mismatch"
    case .malformedRecord: "malformed record"
    default: "\(error)"
    }
}

extension KV {
    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a value under KEY: from VALUE, from --file, or else from standard input.")

        @Argument(help: "The key (UTF-8 text, 1 to 511 bytes).") var key: String
        @Argument(help: "The value as text (UTF-8).") var value: String?
        @Option(help: "Read the value from this file.") var file: String?
        @OptionGroup var store: StoreOptions
        @OptionGroup(title: "A cluster (instead of --data-dir)") var cluster: PeerOptions

        func validate() throws {
            if value != nil && file != nil {
                throw ValidationError("give the value as an argument or --file, not both")
            }
            try validateWhere(store, cluster)
        }

        func run() async throws {
            try await runKV(key: key) {
                let bytes: [UInt8]
                if let value {
                    bytes = Array(value.utf8)
                } else if let file {
                    guard let data = FileManager.default.contents(atPath: file) else {
                        throw CommandFailure("cannot read file '\(file)'")
                    }
                    bytes = [UInt8](data)
                } else {
                    bytes = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
                }
                if cluster.peer != nil {
                    var put = ClientRequest()
                    put.put.name = key
                    let (reply, _) = try await cluster.connect().ask(put, payloads: [WirePayload(bytes)], timeout: .seconds(60))
                    guard case .stored(let stored)? = reply.kind else { throw CommandFailure("the peer answered \(reply)") }
                    print("stored '\(key)' (\(bytes.count) bytes) as version \(stored.version.stamp) on its replicas")
                    return
                }
                let shard = try store.open(create: true)
                try shard.put(keyBytes(key), bytes, in: store.table)
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Write the value under KEY to standard output or --output; exit 1 if missing or damaged.",
            discussion: """
                A value is written as stored (raw bytes), except a persistent object in Shoal's binary \
                encoding (one whose info in table 'versions' says codec 'binary'): that is shown as its \
                structure, field names, strings, numbers and summarised arrays, read without its Swift \
                type (see docs/value-encoding.md). --raw writes its stored bytes instead.
                """)

        @Argument(help: "The key (UTF-8 text).") var key: String
        @Option(help: "Write the value to this file instead of standard output.") var output: String?
        @Flag(help: "Write the stored bytes even for a persistent object in the binary encoding.") var raw = false
        @OptionGroup var store: StoreOptions
        @OptionGroup(title: "A cluster (instead of --data-dir)") var cluster: PeerOptions

        func validate() throws { try validateWhere(store, cluster) }

        func run() async throws {
            try await runKV(key: key) {
                if cluster.peer != nil {
                    var get = ClientRequest()
                    get.get.name = key
                    let (reply, frames) = try await cluster.connect().ask(get, timeout: .seconds(60))
                    guard case .value(let v)? = reply.kind else { throw CommandFailure("the peer answered \(reply)") }
                    guard v.found else { throw CommandFailure("no object '\(key)' on the cluster of \(cluster.address)") }
                    let data = frames.first?.data ?? Data()
                    if let output {
                        guard FileManager.default.createFile(atPath: output, contents: data) else {
                            throw CommandFailure("cannot write file '\(output)'")
                        }
                    } else {
                        FileHandle.standardOutput.write(data)
                    }
                    return
                }
                let shard = try store.open(create: false)
                let table = store.table
                // The value and its object info from one snapshot, so they are of one version.
                let (stored, info) = try shard.read { reader in
                    (
                        try reader.get(keyBytes(key), in: table),
                        table == .values ? try Self.objectInfo(key, reader) : nil
                    )
                }
                guard let value = stored else {
                    throw CommandFailure(
                        "no key '\(key)' in table '\(store.table.rawValue)' of '\(store.dataDirectory ?? "")'")
                }
                var bytes = value
                if let info, info.codec == PersistentObjectInfo.binaryCodec, !raw {
                    bytes = Array(try Self.structure(of: value, key: key, info: info).utf8)
                }
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(bytes)) else {
                        throw CommandFailure("cannot write file '\(output)'")
                    }
                } else {
                    FileHandle.standardOutput.write(Data(bytes))
                }
            }
        }

        /// The persistent-object info stored beside `key`, or nil when there is none or it is not
        /// an info record (a `kv put` into `versions`): the value is then written as stored, as
        /// `kv get` always did. A damaged record still fails (`ShardError`).
        static func objectInfo(_ key: String, _ reader: any ShardReader) throws -> PersistentObjectInfo? {
            do {
                return try PersistentObjects.info(key, in: reader)
            } catch is DecodingError {
                return nil
            }
        }

        /// What `kv get` shows for a binary persistent object: a line saying what it is and how
        /// the view is made, then `BinaryStructure`'s view of it.
        static func structure(of value: [UInt8], key: String, info: PersistentObjectInfo) throws -> String {
            let writer = info.writer.map { ", written by '\($0)'" } ?? ""
            let header = """
                # '\(KeyText.escaped(Array(key.utf8)))': persistent object version \(info.version) of type \(info.type)\(writer), \
                \(value.count) bytes in Shoal's binary encoding.
                # The encoding records lengths, not types: this is its structure read from the lengths, \
                numbers with the readings they may have (the more plausible first). --raw writes the stored bytes.

                """
            do {
                return header + (try BinaryStructure.describe(value))
            } catch let error as BinaryStructure.Malformed {
                throw CommandFailure(
                    "'\(KeyText.escaped(Array(key.utf8)))' is recorded as a binary persistent object, but its value is "
                        + "\(error) (--raw writes the stored bytes)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List keys in key order, one per line with the value's size in bytes.",
            discussion: """
                A key that is not printable UTF-8 is shown escaped: \\xHH for each such byte, \\\\ for a \
                backslash. An entry whose record fails its checksum is listed as 'KEY<tab>DAMAGED: reason'; \
                every entry is listed, and the exit status is then 1.
                """)

        @Option(help: "Only keys starting with this text.") var prefix: String = ""
        @Option(help: "At most this many keys.") var limit: Int?
        @OptionGroup var store: StoreOptions
        @OptionGroup(title: "A cluster (instead of --data-dir)") var cluster: PeerOptions

        func validate() throws {
            if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more, got \(limit)") }
            try validateWhere(store, cluster, clusterServed: false)
        }

        func run() throws {
            try runKV(key: nil) {
                let shard = try store.open(create: false)
                let pageSize = 1_000
                var remaining = limit ?? Int.max
                var after: [UInt8]? = nil
                var listed = 0
                var damaged = 0
                let out = FileHandle.standardOutput
                while remaining > 0 {
                    let page = try shard.scanReportingDamage(
                        store.table, prefix: keyBytes(prefix), after: after, limit: min(pageSize, remaining))
                    if page.isEmpty { break }
                    var text = ""
                    for entry in page {
                        switch entry.value {
                        case .success(let value):
                            text += "\(KeyText.escaped(entry.key))\t\(value.count)\n"
                        case .failure(let error):
                            damaged += 1
                            text += "\(KeyText.escaped(entry.key))\tDAMAGED: \(damageSummary(error))\n"
                        }
                    }
                    out.write(Data(text.utf8))
                    listed += page.count
                    remaining -= page.count
                    after = page.last!.key
                }
                if damaged > 0 {
                    throw CommandFailure(
                        "\(damaged) of the \(listed) entries listed from table '\(store.table.rawValue)' of "
                            + "'\(store.dataDirectory ?? "")' \(damaged == 1 ? "is" : "are") damaged")
                }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove KEY (no error if it is missing).")

        @Argument(help: "The key (UTF-8 text).") var key: String
        @OptionGroup var store: StoreOptions
        @OptionGroup(title: "A cluster (instead of --data-dir)") var cluster: PeerOptions

        func validate() throws { try validateWhere(store, cluster, clusterServed: false) }

        func run() throws {
            try runKV(key: key) {
                let shard = try store.open(create: false)
                try shard.delete(keyBytes(key), in: store.table)
            }
        }
    }
}
