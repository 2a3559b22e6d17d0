"""mmkd quickstart: a distillation method end to end on generated toy data, on a CPU in minutes.

    python tools/quickstart.py                      # the default method, ssim, one seed per student
    python tools/quickstart.py --seeds 0 1 2        # seed-to-seed noise of the students
    python tools/quickstart.py --list               # the methods

A method trains its stages (for ssim: the teacher, RetinaNet with 32-wide ResNet-18 stages; the baseline
student, 16-wide; the SSIM-distilled student, same schedule and seed), tests each, prints a table and saves it
as Markdown and JSON in the work dir. Each stage keeps its checkpoints and a record in its own folder; a stage
whose record matches its config is reused on the next run (``--force`` retrains). See mmkd/quickstart/.
"""
import os.path as osp
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if __name__ == '__main__':
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    sys.path.insert(0, ROOT)
    from mmkd.quickstart import main
    main(ROOT)
