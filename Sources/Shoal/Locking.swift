#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex with condition variables, for the runtime's worker threads. Swift's `Mutex`
/// has no condition variable, and worker threads must sleep without spinning.
final class ThreadLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        #if os(Linux)
        // Critical sections here are short (a batch of graph updates): spin briefly before
        // sleeping in the kernel, instead of paying a futex sleep and wake-up per contention.
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        #endif
        precondition(pthread_mutex_init(mutex, &attr) == 0, "pthread_mutex_init failed")
        pthread_mutexattr_destroy(&attr)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// A condition variable bound to this lock.
    final class Condition: @unchecked Sendable {
        private let cond: UnsafeMutablePointer<pthread_cond_t>
        private let lock: ThreadLock

        init(_ lock: ThreadLock) {
            self.lock = lock
            cond = .allocate(capacity: 1)
            cond.initialize(to: pthread_cond_t())
            precondition(pthread_cond_init(cond, nil) == 0, "pthread_cond_init failed")
        }

        deinit {
            pthread_cond_destroy(cond)
            cond.deallocate()
        }

        /// Waits; the lock must be held and is held again on return.
        func wait() { pthread_cond_wait(cond, lock.mutex) }
        func signal() { pthread_cond_signal(cond) }
        func broadcast() { pthread_cond_broadcast(cond) }
    }
}
