# florence/ text part: tokenizer, task prompts and post-processing (pure functions, no model).
# Included from src/florence/CMakeLists.txt; library `celeriac_florence`.
find_package(ICU REQUIRED COMPONENTS uc)

add_library(celeriac_florence STATIC
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/prompts.cc
  ${CMAKE_CURRENT_LIST_DIR}/postprocess.cc
)
# Post-processing must round float32 products exactly as PyTorch (no fused multiply-add).
target_compile_options(celeriac_florence PRIVATE -ffp-contract=off)
target_include_directories(celeriac_florence PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence PUBLIC nlohmann_json::nlohmann_json PRIVATE ICU::uc)

add_executable(celeriac_florence_text_test
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/prompts_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/postprocess_test.cc
)
target_compile_definitions(celeriac_florence_text_test PRIVATE
  CELERIAC_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data")
target_link_libraries(celeriac_florence_text_test PRIVATE celeriac_florence GTest::gtest_main)
gtest_discover_tests(celeriac_florence_text_test PROPERTIES LABELS unit)
