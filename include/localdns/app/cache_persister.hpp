// Warm restarts (`cache.persist_file`): the cache read back from its file at
// start, before the workers serve, and written every `cache.persist_interval`
// on a thread of its own and once more at shutdown, after the workers stop.
// Saving copies one cache shard at a time (cache/persist.hpp): a worker waits
// at most for one shard's copy, and the hit path is not otherwise touched.
//
// Threads: load(), start() and stop_and_save() from the controlling thread;
// the saver thread between start() and stop_and_save(); counters() from any
// thread (the metrics scrape).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::app {

class CachePersister {
 public:
  struct Options {
    std::string path;
    util::Duration interval{0};          // 0: only at shutdown
    std::uint32_t max_stale_window = 0;  // the longest serve-stale window configured
    std::size_t max_file_bytes = 0;      // larger files are ignored at load
  };
  struct Counters {
    std::atomic<std::uint64_t> saves{0};
    std::atomic<std::uint64_t> save_failures{0};
    std::atomic<std::uint64_t> load_failures{0};  // files ignored (missing ones are not)
    std::atomic<std::uint64_t> entries_loaded{0};
    std::atomic<std::uint64_t> entries_saved{0};  // by the last save
  };

  CachePersister(cache::PacketCache& cache, Options options);
  ~CachePersister();
  CachePersister(const CachePersister&) = delete;
  CachePersister& operator=(const CachePersister&) = delete;

  // Restores the file's entries; a missing, unreadable or invalid file is
  // logged (a warning unless missing) and leaves the cache empty.
  void load();
  // Starts the periodic saver when the interval is not 0.
  void start();
  // Stops the saver, then saves once more if load() ran. Called once the
  // workers stopped.
  void stop_and_save();

  const Counters& counters() const { return counters_; }

 private:
  bool save(const char* when);
  void saver_loop();

  cache::PacketCache& cache_;
  const Options options_;
  Counters counters_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // under mu_
  bool loaded_ = false;    // controlling thread only
  std::thread saver_;
};

}  // namespace localdns::app
