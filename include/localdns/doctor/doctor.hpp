// `localdns doctor`: runs the checks of checks.hpp on this node and prints
// the report. probe.cpp gathers the inputs (procfs, the rules, netlink, DNS
// and TCP probes); checks.cpp judges them; this renders them.
#pragma once

#include <string>
#include <vector>

#include <localdns/doctor/checks.hpp>

namespace localdns::doctor {

struct ReportMeta {
  bool root = false;
  std::string resolver = "glibc";
  unsigned watch_seconds = 0;
  std::vector<std::string> notes;  // e.g. which checks need root
};

std::string render_text(const std::vector<Check>& checks, const ReportMeta& meta, bool colour);
std::string render_json(const std::vector<Check>& checks, const ReportMeta& meta);

// The whole command; returns its exit code (0, 1, 2, or 64 for a usage error).
int run_doctor(const std::vector<std::string>& args);

}  // namespace localdns::doctor
