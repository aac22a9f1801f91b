#include <cstdio>

#include <localdns/doctor/doctor.hpp>
#include <localdns/util/text.hpp>

namespace localdns::doctor {

namespace {

// A JSON string: the same escaping as localdns's JSON logs (bytes that are
// not UTF-8 become U+FFFD, so the report stays valid JSON whatever a
// resolv.conf holds).
std::string json_string(std::string_view s) {
  return "\"" + util::json_escape(s) + "\"";
}

std::string json_fact(const Fact& f) {
  struct V {
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", v);
      return buf;
    }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(const std::string& v) const { return json_string(v); }
    std::string operator()(const std::vector<std::string>& v) const {
      std::string out = "[";
      for (std::size_t i = 0; i < v.size(); ++i)
        out += (i ? "," : "") + json_string(v[i]);
      return out + "]";
    }
  };
  return std::visit(V{}, f);
}

std::string json_list(const std::vector<std::string>& v) {
  return json_fact(Fact(v));
}

}  // namespace

std::string render_json(const std::vector<Check>& checks, const ReportMeta& meta) {
  Status overall = Status::ok;
  for (const auto& c : checks)
    overall = worst(overall, c.status);
  std::string out = "{\"version\":" + json_string(LOCALDNS_VERSION) +
                    ",\"status\":" + json_string(to_string(overall)) +
                    ",\"exit_code\":" + std::to_string(exit_code(checks)) +
                    ",\"root\":" + (meta.root ? "true" : "false") +
                    ",\"resolver\":" + json_string(meta.resolver) + ",\"watch_seconds\":" +
                    (meta.watch_seconds ? std::to_string(meta.watch_seconds) : "null") +
                    ",\"notes\":" + json_list(meta.notes) + ",\"checks\":[";
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const auto& c = checks[i];
    out += std::string(i ? "," : "") + "{\"id\":" + std::to_string(c.id) +
           ",\"key\":" + json_string(c.key) + ",\"name\":" + json_string(c.name) +
           ",\"status\":" + json_string(to_string(c.status)) +
           ",\"evidence\":" + json_list(c.evidence) + ",\"remedies\":" + json_list(c.remedies) +
           ",\"facts\":{";
    bool first = true;
    for (const auto& [k, v] : c.facts) {
      out += std::string(first ? "" : ",") + json_string(k) + ":" + json_fact(v);
      first = false;
    }
    out += "}}";
  }
  return out + "]}\n";
}

std::string render_text(const std::vector<Check>& checks, const ReportMeta& meta, bool colour) {
  auto tag = [&](Status s) {
    std::string t = std::string(to_string(s));
    t.resize(4, ' ');
    if (!colour) return "[" + t + "]";
    const char* code = s == Status::ok ? "32" : s == Status::warn ? "33" : "31";
    return std::string("[\033[") + code + "m" + t + "\033[0m]";
  };
  std::string out = "localdns doctor " + std::string(LOCALDNS_VERSION) + " (" + meta.resolver +
                    " resolver" +
                    (meta.watch_seconds ? ", watched " + std::to_string(meta.watch_seconds) + " s"
                                        : std::string()) +
                    (meta.root ? "" : ", not root") + ")\n";
  for (const auto& n : meta.notes)
    out += "note: " + n + "\n";
  for (const auto& c : checks) {
    out += "\n" + tag(c.status) + " " + std::to_string(c.id) + ". " + c.name + "\n";
    for (const auto& e : c.evidence)
      out += "       " + e + "\n";
    for (const auto& r : c.remedies)
      out += "     -> " + r + "\n";
  }
  return out;
}

}  // namespace localdns::doctor
