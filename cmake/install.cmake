# `cmake --install`: the shared library (versioned soname) and the static one,
# the public headers, portclip.pc and the CMake package portclip (targets
# portclip::portclip, shared, and portclip::portclip_static). The CLI, its man
# page and bash completion are installed by tools/CMakeLists.txt.
#
# Included from the top-level CMakeLists.txt after the library targets, the
# backends and tools/ exist.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS portclip portclip_shared EXPORT portclipTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/portclip.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/portclip DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")

# portclip.pc: what a static link needs beyond libportclip.a. The libraries
# with a .pc of their own go to Requires.private; oneDNN (no .pc in Debian),
# OpenMP's runtime and the system libraries to Libs.private.
set(_pc_libs "")
get_filename_component(_pc_dnnl ${DNNL_LIBRARY} NAME_WE)
string(REGEX REPLACE "^lib" "" _pc_dnnl "${_pc_dnnl}")
get_filename_component(_pc_dnnl_dir ${DNNL_LIBRARY} DIRECTORY)
if(NOT _pc_dnnl_dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
  list(APPEND _pc_libs "-L${_pc_dnnl_dir}")
endif()
list(APPEND _pc_libs "-l${_pc_dnnl}")
foreach(_pc_lib ${OpenMP_C_LIB_NAMES} ${CMAKE_DL_LIBS} pthread m)
  list(APPEND _pc_libs "-l${_pc_lib}")
endforeach()
list(REMOVE_DUPLICATES _pc_libs)
list(JOIN _pc_libs " " PORTCLIP_PC_LIBS_PRIVATE)
# The prefix relative to the .pc file, so that `cmake --install --prefix P`
# gives a portclip.pc that is right wherever P is.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(PORTCLIP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(PORTCLIP_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _pc_up "/portclip-prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/portclip-prefix")
  string(REGEX REPLACE "/$" "" _pc_up "${_pc_up}")
  set(PORTCLIP_PC_PREFIX "\${pcfiledir}/${_pc_up}")
  set(PORTCLIP_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(PORTCLIP_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(PORTCLIP_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/portclip.pc.in ${PROJECT_BINARY_DIR}/portclip.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/portclip.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The CMake package.
set(PORTCLIP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/portclip)
install(EXPORT portclipTargets NAMESPACE portclip:: DESTINATION ${PORTCLIP_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/portclipConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/portclipConfig.cmake
                              INSTALL_DESTINATION ${PORTCLIP_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/portclipConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/portclipConfig.cmake
              ${PROJECT_BINARY_DIR}/portclipConfigVersion.cmake
        DESTINATION ${PORTCLIP_CMAKE_DIR})
