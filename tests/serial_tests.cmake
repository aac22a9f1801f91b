# Included by CTest after the discovered Catch2 tests (tests/CMakeLists.txt):
# tests whose load needs both cores to themselves run alone, never beside
# another test under `ctest -j`.
set_tests_properties(
  "handover: an upgrade under load loses no query and delays none past 1 s"
  PROPERTIES RUN_SERIAL TRUE)
