// Watches the directories of localdns's input files with inotify and calls
// back once they settle. Directories, not files: a ConfigMap volume replaces
// its files by swapping the `..data` symlink, and editors and tools replace a
// file by renaming a new one over it; both leave a watch on the file itself
// pointing at the old inode. Only events for the watched names (or any name,
// for a directory watched whole) count; the callback runs `debounce` after
// the last one (at most 5 debounces after the first, under a steady stream).
// One thread; the callback runs on it. The destructor wakes it at once and
// waits for a callback in progress.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace localdns::app {

struct WatchedDir {
  std::string dir;
  // Names in `dir` whose changes count ("..data" always does); empty: all.
  std::vector<std::string> names;
};

// The watch for one input file: its directory, its name and "..data".
WatchedDir watch_file(const std::string& path);

class ConfigWatcher {
 public:
  static constexpr std::chrono::milliseconds kDebounce{1000};

  // Throws std::system_error when inotify is unavailable; a directory that
  // cannot be watched is logged and skipped.
  ConfigWatcher(std::vector<WatchedDir> dirs, std::function<void()> on_change,
                std::chrono::milliseconds debounce = kDebounce);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // Pure: does an event for `name` in `w` count?
  static bool relevant(const WatchedDir& w, const std::string& name);

 private:
  void run();

  std::vector<WatchedDir> dirs_;
  std::vector<int> wds_;  // watch descriptor of dirs_[i], -1 when not watched
  std::function<void()> on_change_;
  std::chrono::milliseconds debounce_;
  int inotify_ = -1;
  int wake_ = -1;  // eventfd: the destructor's stop request
  std::thread thread_;
};

}  // namespace localdns::app
