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

celeriac_florence_test(celeriac_florence_weights_test
  SOURCES weights_test_util.cc config_test.cc weights_safetensors_test.cc weights_torch_zip_test.cc
    weights_checkpoint_test.cc hub_test.cc
  LIBS celeriac_florence_weights)
target_compile_definitions(celeriac_florence_weights_test PRIVATE
  CELERIAC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
