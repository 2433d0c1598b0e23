#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex with condition variables, for the runtime's worker threads. Swift's `Mutex`
/// has no condition variable, and worker threads must sleep without spinning. `package`: the
/// reference scheduler of the benchmarks (ShoalExamples) uses the engine's own lock.
package final class ThreadLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    package init() {
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

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }

    package func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// A condition variable bound to this lock.
    package final class Condition: @unchecked Sendable {
        private let cond: UnsafeMutablePointer<pthread_cond_t>
        private let lock: ThreadLock

        package init(_ lock: ThreadLock) {
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
        package func wait() { pthread_cond_wait(cond, lock.mutex) }
        package func signal() { pthread_cond_signal(cond) }
        package func broadcast() { pthread_cond_broadcast(cond) }
    }
}
