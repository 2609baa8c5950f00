# Writes generated/version.hpp with the commit the build is made from, at build time (a
# flopscope_version target runs it on every build), so a binary never names the commit its
# tree was configured at. "+dirty" when tracked files differ from that commit; "unknown"
# outside a git checkout. configure_file leaves the file alone when nothing changed, so an
# unchanged commit rebuilds nothing.
#   cmake -DSOURCE_DIR=... -DOUT=... -DPROJECT_VERSION=... -P cmake/version.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE FLOPSCOPE_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                RESULT_VARIABLE rev_status)
if(NOT rev_status EQUAL 0 OR NOT FLOPSCOPE_GIT_COMMIT)
  set(FLOPSCOPE_GIT_COMMIT "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE dirty
                  ERROR_QUIET)
  if(dirty EQUAL 1)
    string(APPEND FLOPSCOPE_GIT_COMMIT "+dirty")
  endif()
endif()
configure_file(${SOURCE_DIR}/src/version.hpp.in ${OUT} @ONLY)
