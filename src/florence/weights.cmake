# florence/ weights part: config.json, safetensors and PyTorch-zip readers (memory-mapped, zero
# copy), the two key layouts, and the Hugging Face hub download/cache. Included from
# src/florence/CMakeLists.txt; a separate library so the tokenizer/model code can evolve beside it.

add_library(celeriac_florence_weights STATIC
  ${CMAKE_CURRENT_LIST_DIR}/config.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_tensor.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_mapped_file.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_safetensors.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_pickle.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_torch_zip.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_layout.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_checkpoint.cc
  ${CMAKE_CURRENT_LIST_DIR}/hub.cc
)
target_include_directories(celeriac_florence_weights PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_weights
  PUBLIC nlohmann_json::nlohmann_json
  PRIVATE celeriac_storage OpenSSL::Crypto spdlog::spdlog Threads::Threads)

add_executable(celeriac_florence_weights_test
  ${CMAKE_CURRENT_LIST_DIR}/weights_test_util.cc
  ${CMAKE_CURRENT_LIST_DIR}/config_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_safetensors_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_torch_zip_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_checkpoint_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/hub_test.cc
)
target_compile_definitions(celeriac_florence_weights_test PRIVATE
  CELERIAC_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data"
  CELERIAC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(celeriac_florence_weights_test PRIVATE celeriac_florence_weights
  GTest::gtest_main)
gtest_discover_tests(celeriac_florence_weights_test PROPERTIES LABELS unit)
