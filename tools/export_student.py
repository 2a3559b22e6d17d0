"""Export the student of an mmkd distillation checkpoint for stock mmdet / mmseg.

    python tools/export_student.py CHECKPOINT OUT_DIR [--config CONFIG]

writes OUT_DIR/student.pth and OUT_DIR/student_config.py, which mmdet's DetInferencer (or
mmseg's MMSegInferencer) loads without mmkd installed.
"""
import argparse

from mmkd.utils.export import export_student


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('checkpoint', help='checkpoint saved while training an mmkd distiller')
    parser.add_argument('out_dir', help='folder for student.pth and student_config.py')
    parser.add_argument('--config', help='the training config (default: the one stored in the checkpoint)')
    args = parser.parse_args()
    ckpt_path, cfg_path = export_student(args.checkpoint, args.out_dir, args.config)
    print(f'student weights: {ckpt_path}\nstudent config:  {cfg_path}')


if __name__ == '__main__':
    main()
