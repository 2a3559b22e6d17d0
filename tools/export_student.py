"""Export the deployable network of an mmkd checkpoint (a distiller's student, ...) for stock mmdet / mmseg.

    python tools/export_student.py CHECKPOINT OUT_DIR [--config CONFIG] [--network NAME]

writes OUT_DIR/student.pth and OUT_DIR/student_config.py: the network that the model declares deployable
(see mmkd.models.utils.Deployable). A detection or segmentation network loads in mmdet's DetInferencer
(or mmseg's MMSegInferencer) without mmkd installed; --network picks another network of a model that
trains several (a CoLAD pair); a config that still names mmkd types (mmkd's own
model kinds, or a head with no mmdet equivalent such as COPHead) says so, and needs mmkd.
"""
import argparse

from mmkd.utils.export import export_student


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('checkpoint', help='checkpoint saved while training an mmkd model')
    parser.add_argument('out_dir', help='folder for student.pth and student_config.py')
    parser.add_argument('--config', help='the training config (default: the one stored in the checkpoint)')
    parser.add_argument(
        '--network',
        help='the network to export, for a model of several trained networks (CoLAD): '
        'default its predict_network')
    args = parser.parse_args()
    exported = export_student(args.checkpoint, args.out_dir, args.config, args.network)
    print(f'exported network: {exported.network}\nweights: {exported.checkpoint}\nconfig:  {exported.config}')
    if exported.mmkd_types and exported.predicts_without_mmkd:
        print(f'needs mmkd to train only: the training set names {", ".join(exported.mmkd_types)}, which have no stock '
              'equivalent; stock mmdet / mmseg load the config and predict without mmkd (its import may fail)')
    elif exported.mmkd_types:
        print(f'needs mmkd: the config names {", ".join(exported.mmkd_types)}, which have no stock equivalent '
              "(it keeps custom_imports=['mmkd'])")
    else:
        print('needs no mmkd: stock mmdet / mmseg load it')


if __name__ == '__main__':
    main()
