import ArgumentParser
import Foundation
import ShoalCore
import ShoalStore

/// `shoal kv put/get/ls/rm`: read and write a local shard directly.
struct KV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Read and write values in a local store (an LMDB data directory).",
        subcommands: [Put.self, Get.self, List.self, Remove.self])
}

extension ShardTable: ExpressibleByArgument {}

/// A command-line failure with a message meant for the user (printed as `Error: ...`).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where the store lives and which table to use.
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The store's data directory.")
    var dataDirectory: String

    @Option(help: "The table: \(ShardTable.allCases.map(\.rawValue).joined(separator: ", ")).")
    var table: ShardTable = .values

    /// Opens the store; with `create` false a missing store is an error rather than created.
    func open(create: Bool) throws -> LMDBShard {
        if !create && !FileManager.default.fileExists(atPath: dataDirectory + "/data.mdb") {
            throw CommandFailure("no store in '\(dataDirectory)' (expected \(dataDirectory)/data.mdb)")
        }
        return try LMDBShard(directory: dataDirectory)
    }
}

/// Bytes of a key given on the command line (its UTF-8).
private func keyBytes(_ key: String) -> [UInt8] { Array(key.utf8) }

/// A key as shown to the user: its text if printable UTF-8, else `0x` and hex.
func displayKey(_ key: [UInt8]) -> String {
    if let text = String(validating: key, as: UTF8.self),
        text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) && !text.contains(" ")
    {
        return text
    }
    return "0x" + key.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
}

extension KV {
    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a value under KEY: from VALUE, from --file, or else from standard input.")

        @Argument(help: "The key (its UTF-8 bytes, 1 to 511).") var key: String
        @Argument(help: "The value as text.") var value: String?
        @Option(help: "Read the value from this file.") var file: String?
        @OptionGroup var store: StoreOptions

        func validate() throws {
            if value != nil && file != nil { throw ValidationError("give the value as an argument or --file, not both") }
        }

        func run() throws {
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
            let shard = try store.open(create: true)
            try shard.put(keyBytes(key), bytes, in: store.table)
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the value under KEY to standard output (raw bytes) or --output; exit 1 if missing.")

        @Argument(help: "The key.") var key: String
        @Option(help: "Write the value to this file instead of standard output.") var output: String?
        @OptionGroup var store: StoreOptions

        func run() throws {
            let shard = try store.open(create: false)
            guard let value = try shard.get(keyBytes(key), in: store.table) else {
                throw CommandFailure("no key '\(key)' in table '\(store.table.rawValue)' of '\(store.dataDirectory)'")
            }
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: Data(value)) else {
                    throw CommandFailure("cannot write file '\(output)'")
                }
            } else {
                FileHandle.standardOutput.write(Data(value))
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List keys in key order, one per line with the value's size in bytes.")

        @Option(help: "Only keys starting with this text.") var prefix: String = ""
        @Option(help: "At most this many keys.") var limit: Int?
        @OptionGroup var store: StoreOptions

        func validate() throws {
            if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more, got \(limit)") }
        }

        func run() throws {
            let shard = try store.open(create: false)
            let pageSize = 1_000
            var remaining = limit ?? Int.max
            var after: [UInt8]? = nil
            let out = FileHandle.standardOutput
            while remaining > 0 {
                let page = try shard.scan(store.table, prefix: keyBytes(prefix), after: after, limit: min(pageSize, remaining))
                if page.isEmpty { break }
                var text = ""
                for entry in page { text += "\(displayKey(entry.key))\t\(entry.value.count)\n" }
                out.write(Data(text.utf8))
                remaining -= page.count
                after = page.last!.key
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove KEY (no error if it is missing).")

        @Argument(help: "The key.") var key: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            let shard = try store.open(create: false)
            try shard.delete(keyBytes(key), in: store.table)
        }
    }
}
