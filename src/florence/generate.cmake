# florence/ search part: greedy and beam search over a DecoderSession (no model needed), checked
# against transformers' generate() on a toy model. Included from src/florence/CMakeLists.txt.
add_library(celeriac_florence_generate STATIC
  ${CMAKE_CURRENT_LIST_DIR}/generate.cc
  ${CMAKE_CURRENT_LIST_DIR}/search_math.cc
)
# Scores are float32 sums and quotients in PyTorch's order: no fused multiply-add. Only the
# double exp-sum of log_softmax is vectorised with fast-math (search_math.h).
target_compile_options(celeriac_florence_generate PRIVATE -ffp-contract=off)
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/search_math.cc PROPERTIES
  COMPILE_OPTIONS "-O3;-ffast-math;-fopenmp-simd")
target_include_directories(celeriac_florence_generate PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_generate PUBLIC nlohmann_json::nlohmann_json)

add_executable(celeriac_florence_generate_test
  ${CMAKE_CURRENT_LIST_DIR}/generate_test.cc
)
target_compile_definitions(celeriac_florence_generate_test PRIVATE
  CELERIAC_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data")
target_link_libraries(celeriac_florence_generate_test PRIVATE celeriac_florence_generate
  GTest::gtest_main)
gtest_discover_tests(celeriac_florence_generate_test PROPERTIES LABELS unit)

# The search on the real model: the tiny checkpoints end to end against the reference outputs.
add_executable(celeriac_florence_generate_model_test
  ${CMAKE_CURRENT_LIST_DIR}/generate_model_test.cc
)
target_compile_definitions(celeriac_florence_generate_model_test PRIVATE
  CELERIAC_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data")
target_link_libraries(celeriac_florence_generate_model_test PRIVATE celeriac_florence_generate
  celeriac_florence_model GTest::gtest_main)
# OpenMP threads that spin while waiting make this 5-25x slower on a busy two-core machine.
gtest_discover_tests(celeriac_florence_generate_model_test PROPERTIES LABELS unit
  ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)
