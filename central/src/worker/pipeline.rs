//! One inspection, from its stored events and images to an [`InspectionResult`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use image::RgbImage;
use inspection_core::compare::{self, ChangeConfig};
use inspection_core::geometry::BBox;
use inspection_core::ids::CameraId;
use inspection_core::quality;
use inspection_core::wire::{EventBody, InspectionKind, Sha256Hex};
use inspection_core::yolo::Detection;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use super::WorkerConfig;
use super::metrics::{FindingLabels, OutcomeLabels, StateLabels};
use crate::detect::{DetectError, Detector};
use crate::plates::PlateReader;
use crate::report::{Language, ReportInput, WriterChain};
use crate::store::{
    Comparison, DamageModel, Finding, FindingSource, FindingStatus, FrameRecord, FrameState,
    InspectionResult, PlateOutcome, PlateReadRecord, Store, StoreError, Summary,
};
use crate::upload::object_key;

use super::WorkerMetrics;

/// Class names a damage model may use for the vehicle itself: a box of one
/// of them is the frame's vehicle box, not a finding.
const VEHICLE_CLASSES: [&str; 5] = ["car", "vehicle", "truck", "bus", "van"];

/// What the pipeline runs, built once per worker.
pub struct Components {
    /// The damage model, when the operator configured one.
    pub damage: Option<Arc<dyn Detector>>,
    /// The plate detector (platedet).
    pub plate_detector: Option<Arc<dyn Detector>>,
    /// OCR of plate boxes; needs `plate_detector` to be useful, and falls
    /// back to text detection without it.
    pub plate_reader: Option<Arc<PlateReader>>,
    pub change: ChangeConfig,
    /// Writes each processed inspection's report.
    pub reports: Arc<WriterChain>,
    /// The language reports are written in.
    pub language: Language,
}

/// Why an attempt failed. `transient` errors are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("object store: {0}")]
    ObjectStore(String),
    #[error("detector: {0}")]
    Detector(#[from] DetectError),
    #[error("inspection {0} is not in the store")]
    NoInspection(Uuid),
    #[error("inspection {id}: {reason}")]
    Invalid { id: Uuid, reason: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl ProcessError {
    /// A stable code for metric labels and the job's last error.
    pub fn code(&self) -> &'static str {
        match self {
            ProcessError::Store(_) => "store",
            ProcessError::ObjectStore(_) => "object_store",
            ProcessError::Detector(_) => "detector",
            ProcessError::NoInspection(_) => "no_inspection",
            ProcessError::Invalid { .. } => "invalid_inspection",
            ProcessError::Internal(_) => "internal",
        }
    }
}

/// What an attempt came to.
#[derive(Debug)]
pub enum Outcome {
    /// The result is stored.
    Processed(Box<InspectionResult>),
    /// Some images are not in the object store yet.
    WaitForImages { missing: Vec<String> },
    /// Images still missing after the wait: nothing processed.
    ImagesMissing { missing: Vec<String> },
    /// Staff have begun reviewing the inspection (finding decisions, the
    /// review mark or a charge): its stored result and their decisions are
    /// kept, and nothing of this attempt was written (why, for the log).
    ReviewKept { reason: String },
}

/// A frame the inspection names, from its `frame_selected` event.
#[derive(Debug, Clone)]
struct FrameRef {
    camera: CameraId,
    position: String,
    sha256: Sha256Hex,
    rank: u32,
}

/// A frame with its decoded image, when it could be used.
struct LoadedFrame {
    record: FrameRecord,
    image: Option<Arc<RgbImage>>,
}

/// What one attempt works with: the worker's parts, borrowed.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a WorkerConfig,
    pub(crate) worker_id: &'a str,
    pub(crate) store: &'a Arc<dyn Store>,
    pub(crate) images: &'a Arc<dyn ObjectStore>,
    pub(crate) components: &'a Components,
    pub(crate) metrics: &'a WorkerMetrics,
}

/// Processes one inspection. `job_enqueued_at` bounds the wait for images.
pub(crate) async fn process(
    ctx: &Context<'_>,
    inspection_id: Uuid,
    job_enqueued_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Outcome, ProcessError> {
    let Context {
        config,
        worker_id,
        store,
        images,
        components,
        metrics,
    } = *ctx;
    let inspection = store
        .inspection(inspection_id)
        .await?
        .ok_or(ProcessError::NoInspection(inspection_id))?;
    let events = store.inspection_events(inspection_id).await?;
    let mut kind = inspection.kind;
    let mut frames = Vec::new();
    for stored in &events {
        match &stored.event.event {
            EventBody::InspectionStarted { kind: k, .. } => kind = Some(*k),
            EventBody::FrameSelected {
                camera,
                image,
                rank,
                ..
            } => frames.push(FrameRef {
                camera: camera.id.clone(),
                position: camera.position.clone(),
                sha256: image.sha256.clone(),
                rank: *rank,
            }),
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| ProcessError::Invalid {
        id: inspection_id,
        reason: "no inspection_started event".into(),
    })?;
    frames.sort_by(|a, b| (&a.camera, a.rank).cmp(&(&b.camera, b.rank)));
    frames.dedup_by(|a, b| a.camera == b.camera && a.sha256 == b.sha256);

    // Every image first: an inspection is processed whole or not at all.
    let mut bytes = Vec::with_capacity(frames.len());
    let mut missing = Vec::new();
    for frame in &frames {
        match fetch(images, &frame.sha256).await? {
            Some(b) => bytes.push(Some(b)),
            None => {
                missing.push(frame.sha256.to_string());
                bytes.push(None);
            }
        }
    }
    if !missing.is_empty() {
        let waited = now - job_enqueued_at;
        let limit = chrono::Duration::seconds(config.image_wait_s as i64);
        return Ok(if waited < limit {
            Outcome::WaitForImages { missing }
        } else {
            Outcome::ImagesMissing { missing }
        });
    }

    // Decode and re-check quality off the async threads.
    let thresholds = config.quality.clone();
    let frames_for_decode = frames.clone();
    let loaded: Vec<LoadedFrame> = tokio::task::spawn_blocking(move || {
        frames_for_decode
            .iter()
            .zip(bytes)
            .map(|(frame, bytes)| load_frame(frame, bytes.as_deref(), &thresholds))
            .collect()
    })
    .await
    .map_err(|e| ProcessError::Internal(format!("decode task: {e}")))?;
    for frame in &loaded {
        metrics
            .frames
            .get_or_create(&StateLabels {
                state: frame.record.state.name(),
            })
            .inc();
    }

    // Damage and plate detection on every usable frame, all at once: the
    // detectors batch concurrent calls.
    let detections = futures_util::future::join_all(loaded.iter().map(|frame| async {
        let Some(image) = &frame.image else {
            return Ok::<_, DetectError>((None, None));
        };
        let damage = match &components.damage {
            Some(d) => Some(d.detect(image.clone()).await?),
            None => None,
        };
        let plates = match &components.plate_detector {
            Some(d) => Some(d.detect(image.clone()).await?),
            None => None,
        };
        Ok((damage, plates))
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;

    let damage_classes = components
        .damage
        .as_ref()
        .map(|d| d.info().classes.clone())
        .unwrap_or_default();
    let mut frame_records = Vec::with_capacity(loaded.len());
    let mut findings = Vec::new();
    for (frame, (damage, _)) in loaded.iter().zip(&detections) {
        let mut record = frame.record.clone();
        let dets = damage.as_deref().unwrap_or_default();
        record.vehicle_box = vehicle_box(dets, &damage_classes);
        let status = match kind {
            InspectionKind::Pickup => FindingStatus::Baseline,
            InspectionKind::Return => FindingStatus::New,
        };
        for det in dets {
            let class = class_name(&damage_classes, det.class_id);
            if VEHICLE_CLASSES.contains(&class.as_str()) {
                continue;
            }
            findings.push(Finding {
                id: Uuid::now_v7(),
                camera: record.camera.clone(),
                position: record.position.clone(),
                sha256: record.sha256.clone(),
                class,
                confidence: det.score,
                source: FindingSource::Model,
                status,
                bbox: det.bbox,
                vehicle_bbox: relative_box(&record, det.bbox),
                matched_finding: None,
            });
        }
        frame_records.push(record);
    }

    // Plates: OCR of the detector's boxes, the text-detection fallback
    // without them, then one vote across frames.
    let plate_reads = match &components.plate_reader {
        Some(reader) => {
            let reader = reader.clone();
            let work: Vec<(CameraId, String, Arc<RgbImage>, Vec<Detection>)> = loaded
                .iter()
                .zip(&detections)
                .filter_map(|(frame, (_, plates))| {
                    let image = frame.image.clone()?;
                    Some((
                        frame.record.camera.clone(),
                        frame.record.sha256.clone(),
                        image,
                        plates.clone().unwrap_or_default(),
                    ))
                })
                .collect();
            // One record per frame: its best observation (a frame may show
            // a second car's plate, which the vote then outweighs).
            tokio::task::spawn_blocking(move || {
                work.into_iter()
                    .filter_map(|(camera, sha, image, boxes)| {
                        let observations = reader.read(&image, &boxes);
                        crate::plates::best_observation(&observations)
                            .map(|obs| obs.record(camera, sha))
                    })
                    .collect::<Vec<PlateReadRecord>>()
            })
            .await
            .map_err(|e| ProcessError::Internal(format!("plate task: {e}")))?
        }
        None => Vec::new(),
    };
    for read in &plate_reads {
        metrics
            .plate_reads
            .get_or_create(&OutcomeLabels {
                outcome: match read.outcome {
                    PlateOutcome::Read => "read",
                    PlateOutcome::Unreadable => "unreadable",
                    PlateOutcome::NotFound => "not_found",
                },
            })
            .inc();
    }
    let plate = crate::plates::vote(&plate_reads);

    // The comparison with the same vehicle's last pickup.
    let pickup = match (kind, &plate) {
        (InspectionKind::Return, Some(p)) => {
            let before = inspection.started_at_central.unwrap_or(now);
            match store.latest_pickup(&p.plate, before).await? {
                Some(id) => store.inspection_result(id).await?.map(|r| (id, r)),
                None => None,
            }
        }
        _ => None,
    };
    let comparison = match kind {
        InspectionKind::Pickup => Comparison::NotApplicable,
        InspectionKind::Return => match &pickup {
            Some((pickup_id, pickup)) => {
                let positions = compare_with_pickup(
                    config,
                    images,
                    components,
                    metrics,
                    pickup,
                    &loaded,
                    &frame_records,
                    &mut findings,
                )
                .await?;
                Comparison::Compared {
                    pickup_inspection_id: *pickup_id,
                    positions,
                }
            }
            None => Comparison::NoPickup,
        },
    };

    for finding in &findings {
        metrics
            .findings
            .get_or_create(&FindingLabels {
                source: finding.source.as_str(),
                status: finding.status.as_str(),
            })
            .inc();
    }
    let summary = summarise(&frame_records, &findings);
    let mut plate_models = Vec::new();
    if let Some(d) = &components.plate_detector {
        plate_models.push(d.info().id.clone());
    }
    if let Some(r) = &components.plate_reader {
        plate_models.extend(r.model_ids().iter().cloned());
    }
    let result = InspectionResult {
        inspection_id,
        processed_at: now,
        worker: worker_id.to_owned(),
        damage_model: match &components.damage {
            Some(d) => DamageModel::Used {
                model: d.info().id.clone(),
                classes: d.info().classes.clone(),
            },
            None => DamageModel::NotConfigured,
        },
        plate_models,
        frames: frame_records,
        findings,
        plate_reads,
        plate,
        comparison,
        summary,
    };
    // The report: the chain always returns one (the template is the floor).
    let pickup_record = match &pickup {
        Some((id, _)) => store.inspection(*id).await?,
        None => None,
    };
    let pickup_facts = match (&pickup, &pickup_record) {
        (Some((_, result)), Some(record)) => Some((record, result)),
        _ => None,
    };
    let input = ReportInput::new(&inspection, &result, pickup_facts, components.language);
    let report = components.reports.write(&input, Utc::now()).await;

    // Reprocessing never replaces staff decisions: an inspection staff have
    // begun to review keeps its result, and gets no report of a result that
    // is not stored. (`record_result` refuses it too, should a review begin
    // from here to there.)
    let review = store.review_record(inspection_id).await?;
    if !review.actions.is_empty() || review.reviewed.is_some() || review.charge.is_some() {
        return Ok(Outcome::ReviewKept {
            reason: format!(
                "staff have begun reviewing inspection {inspection_id} (finding decisions, the \
                 review mark or a charge)"
            ),
        });
    }

    // The report first: an inspection reads as processed only once its
    // report is there to show.
    store.record_report(&report).await?;
    match store.record_result(&result).await {
        Ok(()) => {}
        Err(StoreError::Conflict(reason)) => return Ok(Outcome::ReviewKept { reason }),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        inspection = %inspection_id,
        report = %report.id,
        writer = %report.writer,
        language = %report.language,
        "report stored"
    );
    Ok(Outcome::Processed(Box::new(result)))
}

/// Matches the return's model findings with the pickup's, and runs change
/// detection per camera position. Returns the positions compared.
#[allow(clippy::too_many_arguments)]
async fn compare_with_pickup(
    config: &WorkerConfig,
    images: &Arc<dyn ObjectStore>,
    components: &Components,
    metrics: &WorkerMetrics,
    pickup: &InspectionResult,
    loaded: &[LoadedFrame],
    frame_records: &[FrameRecord],
    findings: &mut Vec<Finding>,
) -> Result<Vec<String>, ProcessError> {
    let mut positions = Vec::new();
    let best = |frames: &[FrameRecord], position: &str| -> Vec<usize> {
        let mut idx: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.position == position && f.state == FrameState::Ok)
            .map(|(i, _)| i)
            .collect();
        idx.sort_by_key(|&i| frames[i].rank);
        idx.truncate(config.frames_per_position as usize);
        idx
    };
    let mut return_positions: Vec<String> =
        frame_records.iter().map(|f| f.position.clone()).collect();
    return_positions.sort();
    return_positions.dedup();

    for position in return_positions {
        let pickup_frames = best(&pickup.frames, &position);
        let return_frames = best(frame_records, &position);
        let (Some(&p_idx), false) = (pickup_frames.first(), return_frames.is_empty()) else {
            continue;
        };
        positions.push(position.clone());

        // Model findings: same class and overlapping in vehicle-relative
        // coordinates means the damage was already there.
        let pickup_findings: Vec<&Finding> = pickup
            .findings
            .iter()
            .filter(|f| f.position == position && f.source == FindingSource::Model)
            .collect();
        let pickup_boxes: Vec<(String, BBox)> = pickup_findings
            .iter()
            .filter_map(|f| Some((f.class.clone(), f.vehicle_bbox?)))
            .collect();
        let return_idx: Vec<usize> = findings
            .iter()
            .enumerate()
            .filter(|(_, f)| f.position == position && f.source == FindingSource::Model)
            .map(|(i, _)| i)
            .collect();
        let return_boxes: Vec<(String, BBox)> = return_idx
            .iter()
            .map(|&i| {
                let f = &findings[i];
                (f.class.clone(), f.vehicle_bbox.unwrap_or(f.bbox))
            })
            .collect();
        let matches = compare::match_findings(&pickup_boxes, &return_boxes, config.match_min_iou);
        for (&i, matched) in return_idx.iter().zip(matches) {
            if let Some(m) = matched {
                findings[i].status = FindingStatus::PreExisting;
                findings[i].matched_finding = Some(pickup_findings[m].id);
            }
        }

        // Change detection between the best pickup and return frames.
        let pickup_record = &pickup.frames[p_idx];
        let Ok(pickup_sha) = Sha256Hex::new(pickup_record.sha256.clone()) else {
            continue;
        };
        let Some(pickup_bytes) = fetch(images, &pickup_sha).await? else {
            // The pickup's image was erased (retention): nothing to compare.
            metrics.error("pickup_image_missing");
            continue;
        };
        // Decoded once per position, whatever the number of return frames.
        let pickup_image = tokio::task::spawn_blocking(move || {
            image::load_from_memory(&pickup_bytes).map(|i| Arc::new(i.to_rgb8()))
        })
        .await
        .map_err(|e| ProcessError::Internal(format!("decode task: {e}")))?;
        let pickup_image = match pickup_image {
            Ok(i) => i,
            Err(error) => {
                tracing::warn!(%position, %error, "pickup image does not decode; change detection skipped");
                metrics.error("change_detection");
                continue;
            }
        };
        for &r_idx in &return_frames {
            let record = frame_records[r_idx].clone();
            let Some(ret_image) = loaded[r_idx].image.clone() else {
                continue;
            };
            let change_config = components.change.clone();
            let pickup_image = pickup_image.clone();
            let roi = record.vehicle_box;
            let started = std::time::Instant::now();
            let changes = tokio::task::spawn_blocking(move || {
                compare::detect_changes(&pickup_image, &ret_image, roi, &change_config)
            })
            .await
            .map_err(|e| ProcessError::Internal(format!("change task: {e}")))?;
            metrics
                .change_seconds
                .observe(started.elapsed().as_secs_f64());
            let changes = match changes {
                Ok(c) => c,
                Err(reason) => {
                    // Frames that cannot be aligned (a different car, the
                    // camera moved) do not fail the attempt: the pair is
                    // skipped, logged and counted.
                    tracing::warn!(%position, %reason, "change detection skipped");
                    metrics.error("change_detection");
                    continue;
                }
            };
            for region in changes.regions {
                // A changed region already explained by a model finding of
                // this frame adds nothing.
                let explained = findings.iter().any(|f| {
                    f.sha256 == record.sha256
                        && f.source == FindingSource::Model
                        && f.bbox.intersection(&region.bbox).is_some()
                });
                if explained {
                    continue;
                }
                findings.push(Finding {
                    id: Uuid::now_v7(),
                    camera: record.camera.clone(),
                    position: record.position.clone(),
                    sha256: record.sha256.clone(),
                    class: "change".to_owned(),
                    confidence: region.score,
                    source: FindingSource::Change,
                    status: FindingStatus::PossibleNewDamage,
                    bbox: region.bbox,
                    vehicle_bbox: relative_box(&record, region.bbox),
                    matched_finding: None,
                });
            }
        }
    }
    Ok(positions)
}

/// The image's bytes, `None` when it is not in the object store.
async fn fetch(
    images: &Arc<dyn ObjectStore>,
    sha: &Sha256Hex,
) -> Result<Option<bytes::Bytes>, ProcessError> {
    match images.get(&object_key(sha)).await {
        Ok(got) => got
            .bytes()
            .await
            .map(Some)
            .map_err(|e| ProcessError::ObjectStore(e.to_string())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(ProcessError::ObjectStore(e.to_string())),
    }
}

fn load_frame(
    frame: &FrameRef,
    bytes: Option<&[u8]>,
    thresholds: &quality::QualityThresholds,
) -> LoadedFrame {
    let mut record = FrameRecord {
        camera: frame.camera.clone(),
        position: frame.position.clone(),
        sha256: frame.sha256.to_string(),
        rank: frame.rank,
        state: FrameState::Missing,
        width: None,
        height: None,
        sharpness: None,
        brightness: None,
        vehicle_box: None,
    };
    let Some(bytes) = bytes else {
        return LoadedFrame {
            record,
            image: None,
        };
    };
    // The upload role checked the JPEG whole; check again, since an object
    // store is not a checksum (and a file may have been replaced by hand).
    if let Err(problem) = crate::upload::check_jpeg(bytes) {
        record.state = FrameState::Corrupt {
            reason: problem.to_string(),
        };
        return LoadedFrame {
            record,
            image: None,
        };
    }
    let decoded = match image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg) {
        Ok(d) => d,
        Err(e) => {
            record.state = FrameState::Corrupt {
                reason: e.to_string(),
            };
            return LoadedFrame {
                record,
                image: None,
            };
        }
    };
    record.width = Some(decoded.width());
    record.height = Some(decoded.height());
    let verdict = quality::assess(&decoded, thresholds);
    record.sharpness = Some(verdict.metrics.sharpness as f32);
    record.brightness = Some(verdict.metrics.mean_luma as f32);
    if !verdict.accepted() {
        record.state = FrameState::Rejected {
            reasons: verdict
                .reasons
                .iter()
                .map(|r| r.code().to_owned())
                .collect(),
        };
        return LoadedFrame {
            record,
            image: None,
        };
    }
    record.state = FrameState::Ok;
    LoadedFrame {
        record,
        image: Some(Arc::new(decoded.to_rgb8())),
    }
}

fn class_name(classes: &[String], id: usize) -> String {
    classes
        .get(id)
        .cloned()
        .unwrap_or_else(|| format!("class_{id}"))
}

/// The largest box of a vehicle class, if the damage model has such classes.
fn vehicle_box(detections: &[Detection], classes: &[String]) -> Option<BBox> {
    detections
        .iter()
        .filter(|d| VEHICLE_CLASSES.contains(&class_name(classes, d.class_id).as_str()))
        .map(|d| d.bbox)
        .max_by(|a, b| a.area().total_cmp(&b.area()))
}

/// `bbox` relative to the frame's vehicle box, or to the whole frame when no
/// vehicle box was found.
fn relative_box(frame: &FrameRecord, bbox: BBox) -> Option<BBox> {
    let vehicle = frame.vehicle_box.or_else(|| {
        Some(BBox::new(
            0.0,
            0.0,
            frame.width? as f32,
            frame.height? as f32,
        ))
    })?;
    Some(compare::to_vehicle_relative(&bbox, &vehicle))
}

fn summarise(frames: &[FrameRecord], findings: &[Finding]) -> Summary {
    let mut summary = Summary::default();
    for f in frames {
        if f.state == FrameState::Ok {
            summary.frames_ok += 1;
        } else {
            summary.frames_skipped += 1;
        }
    }
    for f in findings {
        *summary
            .findings
            .entry(f.class.clone())
            .or_insert_with(BTreeMap::new)
            .entry(f.status.as_str().to_owned())
            .or_insert(0) += 1;
        match f.status {
            FindingStatus::New => summary.new += 1,
            FindingStatus::PreExisting => summary.pre_existing += 1,
            FindingStatus::PossibleNewDamage => summary.possible_new_damage += 1,
            _ => {}
        }
    }
    summary
}
