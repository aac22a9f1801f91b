// Per-thread scratch space that costs memory only where it is written.
//
// A thread_local buffer is part of every thread's static TLS block, which the
// C library zeroes when the thread starts: each thread pays for every such
// buffer in the program, whether it ever uses one or not. A
// `thread_local ThreadScratch<T>` is a pointer instead: the first get() on a
// thread allocates its T, left uninitialized (T is trivially constructible,
// e.g. arrays of bytes), so the kernel backs only the pages that are written;
// later calls on that thread return the same T, without allocating. The T is
// freed when the thread exits.
//
// Thread-safety: each thread has its own instance; get() is for the calling
// thread only.
#pragma once

#include <memory>
#include <type_traits>

namespace localdns::util {

template <class T>
class ThreadScratch {
  static_assert(std::is_trivially_default_constructible_v<T>);

 public:
  T& get() {
    if (!p_) p_ = std::make_unique_for_overwrite<T>();
    return *p_;
  }

 private:
  std::unique_ptr<T> p_;
};

}  // namespace localdns::util
