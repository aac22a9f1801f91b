// The config watcher on a real directory: which names count, the debounce,
// the ..data swap, and a prompt stop.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/config_watch.hpp>

#include "wait.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

struct Dir {
  std::string path = "/tmp/localdns-watch-" + std::to_string(::getpid());
  Dir() { std::filesystem::create_directories(path); }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& n) const { return path + "/" + n; }
  void write(const std::string& n, const std::string& text) const {
    std::ofstream(file(n)) << text;
  }
};

}  // namespace

TEST_CASE("config watch: the names that count", "[reload]") {
  auto w = app::watch_file("/etc/localdns/localdns.yaml");
  CHECK(w.dir == "/etc/localdns");
  CHECK(app::ConfigWatcher::relevant(w, "localdns.yaml"));
  CHECK(app::ConfigWatcher::relevant(w, "..data"));
  CHECK_FALSE(app::ConfigWatcher::relevant(w, "localdns.yaml.tmp"));
  CHECK_FALSE(app::ConfigWatcher::relevant(w, "other.yaml"));
  CHECK(app::ConfigWatcher::relevant({"/etc/kube-dns", {}}, "stubDomains"));
  CHECK(app::watch_file("localdns.yaml").dir == ".");
}

TEST_CASE("config watch: one call per burst of relevant events, none for other names", "[reload]") {
  Dir d;
  d.write("localdns.yaml", "a");
  std::atomic<int> calls{0};
  app::ConfigWatcher w(
      {app::watch_file(d.file("localdns.yaml"))}, [&] { ++calls; }, 100ms);
  // Other names: nothing, even after several debounces.
  d.write("unrelated.txt", "x");
  d.write("localdns.yaml.swp", "x");
  std::this_thread::sleep_for(400ms);  // asserting an absence: nothing to wait for
  CHECK(calls == 0);
  // A burst (write, then rename over it): one call once it settles.
  d.write("localdns.yaml", "b");
  d.write("new.tmp", "c");
  std::filesystem::rename(d.file("new.tmp"), d.file("localdns.yaml"));
  CHECK(test::wait_until(test::within(3s), [&] { return calls >= 1; }));
  std::this_thread::sleep_for(300ms);
  CHECK(calls == 1);
  // ..data swapped: counts.
  std::filesystem::create_directory(d.file("..v2"));
  std::filesystem::create_directory_symlink("..v2", d.file("..data_tmp"));
  std::filesystem::rename(d.file("..data_tmp"), d.file("..data"));
  CHECK(test::wait_until(test::within(3s), [&] { return calls >= 2; }));
}

TEST_CASE("config watch: stops at once, and skips a directory it cannot watch", "[reload]") {
  Dir d;
  auto t0 = std::chrono::steady_clock::now();
  {
    app::ConfigWatcher w(
        {{"/nonexistent-localdns-dir", {}}, app::watch_file(d.file("x.yaml"))}, [] {}, 10s);
    d.write("x.yaml", "pending");  // a call due in 10 s, not waited for
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}
