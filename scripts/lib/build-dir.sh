# Sourced by scripts/build, scripts/test and scripts/main-job: the build folder and CMake flags of
# the requested target CPU, so that builds for different CPUs never overwrite each other.
#   (default)            this machine's CPU (-march=native), in build/
#   LOCO_PORTABLE=1      baseline x86-64, runs on any x86-64 CPU, in build-portable/
#   LOCO_MARCH=NAME      GCC's -march=NAME (e.g. x86-64-v3, znver2: the oldest node of a cluster),
#                        in build-NAME/
# LOCO_BUILD_DIR overrides the folder.
loco_target_flags=(-DLOCO_NATIVE=ON -DLOCO_MARCH=)
loco_build_dir=$root/build
if [[ ${LOCO_PORTABLE:-0} == 1 ]]; then
  [[ -n ${LOCO_MARCH:-} ]] && { echo "LOCO_PORTABLE=1 and LOCO_MARCH=$LOCO_MARCH exclude each other" >&2; exit 2; }
  loco_target_flags=(-DLOCO_NATIVE=OFF -DLOCO_MARCH=)
  loco_build_dir=$root/build-portable
elif [[ -n ${LOCO_MARCH:-} ]]; then
  loco_target_flags=(-DLOCO_NATIVE=OFF "-DLOCO_MARCH=$LOCO_MARCH")
  loco_build_dir=$root/build-$LOCO_MARCH
fi
loco_build_dir=${LOCO_BUILD_DIR:-$loco_build_dir}
