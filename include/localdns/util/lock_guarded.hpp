// Data reachable only under its lock. A LockGuarded<T> owns a T and a mutex;
// the T can be read or written only through a Locked handle, which holds the
// lock for as long as it lives, so "forgot to lock" does not compile.
//
//   util::LockGuarded<std::unordered_map<K, V>> table;
//   { auto t = table.lock(); t->emplace(k, v); }  // locked for this scope
//   table.with([&](auto& m) { return m.size(); }); // locked for one call
//
// Thread-safety: any thread, any number; the lock is an ordinary std::mutex
// (not recursive: never call lock() again while holding a handle).
#pragma once

#include <mutex>
#include <utility>

namespace localdns::util {

template <class T, class Mutex = std::mutex>
class LockGuarded {
 public:
  template <class U>
  class Handle {
   public:
    Handle(Mutex& mu, U& value) : lock_(mu), value_(&value) {}
    U* operator->() const { return value_; }
    U& operator*() const { return *value_; }

   private:
    std::unique_lock<Mutex> lock_;
    U* value_;
  };
  using Locked = Handle<T>;
  using ConstLocked = Handle<const T>;

  LockGuarded() = default;
  template <class... Args>
  explicit LockGuarded(std::in_place_t, Args&&... args) : value_(std::forward<Args>(args)...) {}
  LockGuarded(const LockGuarded&) = delete;
  LockGuarded& operator=(const LockGuarded&) = delete;

  [[nodiscard]] Locked lock() { return Locked(mu_, value_); }
  [[nodiscard]] ConstLocked lock() const { return ConstLocked(mu_, value_); }

  // Runs f(value) under the lock and returns what it returns.
  template <class F>
  decltype(auto) with(F&& f) {
    std::lock_guard guard(mu_);
    return std::forward<F>(f)(value_);
  }
  template <class F>
  decltype(auto) with(F&& f) const {
    std::lock_guard guard(mu_);
    return std::forward<F>(f)(std::as_const(value_));
  }

 private:
  mutable Mutex mu_;
  T value_{};
};

}  // namespace localdns::util
