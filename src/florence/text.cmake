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

celeriac_florence_test(celeriac_florence_text_test
  SOURCES tokenizer_test.cc prompts_test.cc postprocess_test.cc
  LIBS celeriac_florence)
