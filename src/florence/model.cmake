# florence/ model part: DaViT vision encoder and image projection (later BART and generation) on
# nn/ ops, reading weights through celeriac_florence_weights. Included from
# src/florence/CMakeLists.txt.
add_library(celeriac_florence_model STATIC
  ${CMAKE_CURRENT_LIST_DIR}/davit.cc
)
target_include_directories(celeriac_florence_model PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_model PUBLIC celeriac_nn celeriac_florence_weights)

add_executable(celeriac_florence_model_test
  ${CMAKE_CURRENT_LIST_DIR}/davit_test.cc
)
target_compile_definitions(celeriac_florence_model_test PRIVATE
  CELERIAC_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data")
target_link_libraries(celeriac_florence_model_test PRIVATE celeriac_florence_model
  GTest::gtest_main)
gtest_discover_tests(celeriac_florence_model_test PROPERTIES LABELS unit)
