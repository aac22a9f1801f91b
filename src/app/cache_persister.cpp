#include <chrono>

#include <spdlog/spdlog.h>

#include <localdns/app/cache_persister.hpp>
#include <localdns/cache/persist.hpp>

namespace localdns::app {

CachePersister::CachePersister(cache::PacketCache& cache, Options options)
    : cache_(cache), options_(std::move(options)) {}

CachePersister::~CachePersister() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  lock.unlock();
  cv_.notify_all();
  if (saver_.joinable()) saver_.join();
}

void CachePersister::load() {
  loaded_ = true;
  const auto started = std::chrono::steady_clock::now();
  cache::LoadOptions lo;
  lo.max_file_bytes = options_.max_file_bytes;
  lo.max_stale_window = options_.max_stale_window;
  auto r = cache::load_cache(cache_, options_.path, cache::wall_now(), lo);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  if (r.missing) {
    spdlog::info("cache: no persisted cache at {} yet; starting empty", options_.path);
    return;
  }
  if (!r.ok) {
    counters_.load_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("cache: ignoring persisted cache {}; starting empty", r.error);
    return;
  }
  counters_.entries_loaded.store(r.loaded, std::memory_order_relaxed);
  spdlog::info("cache: loaded {} entries from {} in {} ms ({} expired, {} skipped)", r.loaded,
               options_.path, ms, r.expired, r.skipped);
}

void CachePersister::start() {
  if (options_.interval.count() <= 0 || saver_.joinable()) return;
  saver_ = std::thread([this] { saver_loop(); });
}

void CachePersister::saver_loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, options_.interval, [this] { return stopping_; })) {
    lock.unlock();
    save("periodic");
    lock.lock();
  }
}

void CachePersister::stop_and_save() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (saver_.joinable()) saver_.join();
  // Never replace a file with the empty cache of a run that did not start.
  if (loaded_) save("shutdown");
}

bool CachePersister::save(const char* when) {
  const auto started = std::chrono::steady_clock::now();
  auto r = cache::save_cache(cache_, options_.path, cache::wall_now());
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  if (!r.ok) {
    counters_.save_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("cache: {} save failed: {}", when, r.error);
    return false;
  }
  counters_.saves.fetch_add(1, std::memory_order_relaxed);
  counters_.entries_saved.store(r.entries, std::memory_order_relaxed);
  auto level = std::string_view(when) == "shutdown" ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level, "cache: {} save wrote {} entries ({} bytes) to {} in {} ms", when, r.entries,
              r.bytes, options_.path, ms);
  return true;
}

}  // namespace localdns::app
