"""Analysis of trained detectors: robustness to corruptions, error breakdowns and side-by-side pictures
(``tools/analysis/``)."""
from .detections import (ModelSpec, build_test_set, cached_detections, coco_evaluate, dataset_key, detections_file,
                         insert_after_loading, load_coco, load_detector, model_specs, predict_detections)
from .error_breakdown import breakdown_table, plot_breakdown_comparison, plot_pr_panels, pr_breakdown
from .qualitative import ImageMatch, MatchedDetection, compare_row, match_detections
from .robustness import (plot_robustness, resolve_corruptions, resolve_severities, robustness_markdown,
                         summarize_robustness, write_robustness_json)
from .tide import plot_tide_comparison, tide_errors, tide_ground_truth, tide_table

__all__ = [
    'ModelSpec', 'build_test_set', 'cached_detections', 'coco_evaluate', 'dataset_key', 'detections_file',
    'insert_after_loading', 'load_coco', 'load_detector', 'model_specs', 'predict_detections', 'plot_robustness',
    'resolve_corruptions', 'resolve_severities', 'robustness_markdown', 'summarize_robustness', 'write_robustness_json',
    'ImageMatch', 'MatchedDetection', 'compare_row', 'match_detections', 'breakdown_table', 'plot_breakdown_comparison',
    'plot_pr_panels', 'pr_breakdown', 'plot_tide_comparison', 'tide_errors', 'tide_ground_truth', 'tide_table'
]
