//! A directory of JPEG files replayed as a camera.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inspection_core::ids::CameraId;

use super::clock::Pacer;
use super::config::DirectoryConfig;
use super::metrics::CameraMetrics;
use super::{CaptureError, Frame, FrameSource, SourceContext, jpeg};

/// Replays the files of a directory in byte order of their names.
///
/// The directory is listed when a pass starts (so a looping replay picks up
/// new files), and each file is read only when its turn comes. A file that
/// is not a complete JPEG (empty, foreign, truncated, undecodable, gone) is
/// skipped with a warning and `edge_capture_errors_total{reason}`; it does
/// not take a frame slot. Subdirectories are ignored.
#[derive(Debug)]
pub struct DirectorySource {
    camera: CameraId,
    path: PathBuf,
    looped: bool,
    pending: std::vec::IntoIter<PathBuf>,
    /// Frames delivered in the current pass: a looping pass without any
    /// usable file must end in an error, not spin through an empty list.
    pass_frames: u64,
    index: u64,
    pacer: Pacer,
    ctx: SourceContext,
    metrics: CameraMetrics,
}

impl DirectorySource {
    /// Opens the replay; fails when the directory cannot be listed.
    pub fn open(
        camera: CameraId,
        config: &DirectoryConfig,
        ctx: &SourceContext,
    ) -> Result<Self, CaptureError> {
        let pending = list(&config.path)?.into_iter();
        Ok(Self {
            metrics: ctx.metrics.for_camera(camera.as_str()),
            camera,
            path: config.path.clone(),
            looped: config.looped,
            pending,
            pass_frames: 0,
            index: 0,
            pacer: Pacer::new(config.fps),
            ctx: ctx.clone(),
        })
    }

    /// Reads and checks the next usable file of the current pass.
    fn next_usable(&mut self) -> Option<(PathBuf, Arc<[u8]>, image::RgbImage)> {
        for file in self.pending.by_ref() {
            let result = std::fs::read(&file)
                .map_err(|source| CaptureError::ReadFile {
                    path: file.clone(),
                    source,
                })
                .and_then(|bytes| jpeg::decode_jpeg(&bytes).map(|image| (bytes, image)));
            match result {
                Ok((bytes, image)) => return Some((file, bytes.into(), image)),
                Err(error) => {
                    self.metrics.error(error.code());
                    tracing::warn!(
                        camera = %self.camera,
                        file = %file.display(),
                        reason = error.code(),
                        %error,
                        "skipping replay file"
                    );
                }
            }
        }
        None
    }
}

/// Regular files of `dir` (following symlinks), sorted by name.
fn list(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let error = |source| CaptureError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    // Byte order of the names, so `0009.jpg` < `0010.jpg` and the order
    // does not depend on the locale or the file system.
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

impl FrameSource for DirectorySource {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            if let Some((file, bytes, image)) = self.next_usable() {
                self.pacer.wait(self.ctx.clock.as_ref(), &self.ctx.stop)?;
                let frame = Frame {
                    camera: self.camera.clone(),
                    index: self.index,
                    captured_at: self.ctx.clock.now(),
                    image: Arc::new(image),
                    jpeg: Some(bytes),
                };
                tracing::trace!(camera = %self.camera, file = %file.display(), index = self.index, "replay frame");
                self.index += 1;
                self.pass_frames += 1;
                self.metrics.frame();
                return Ok(Some(frame));
            }
            if self.ctx.stop.is_stopped() {
                return Err(CaptureError::Stopped);
            }
            if !self.looped {
                return Ok(None);
            }
            // A looping pass without one usable file would spin here: report
            // it, and the retry wrapper backs off and reopens the directory.
            if self.pass_frames == 0 {
                return Err(CaptureError::NoUsableFiles {
                    path: self.path.clone(),
                });
            }
            self.pass_frames = 0;
            self.pending = list(&self.path)?.into_iter();
        }
    }

    fn describe(&self) -> String {
        format!(
            "directory {}{}",
            self.path.display(),
            if self.looped { " (loop)" } else { "" }
        )
    }
}
